//! Steps in the dashboard's page, driven through ChromeDriver: editing a key, opening its
//! editor, registering a webhook.

use super::*;

/// Edits key `name` in the page: renames it, narrows its scopes to read:rules and sets
/// metadata; the list shows the change. Then a second edit, opened before another tab
/// renames the key, is refused (the form sent the ETag it read) and says so.
pub(super) async fn edit_in_the_page(browser: &fantoccini::Client, name: &str) {
    let wait = || browser.wait().at_most(Duration::from_secs(15));
    open_editor(browser, name).await;
    let field = browser.find(Locator::Id("edit-name")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys("browser key (edited)").await.unwrap();
    browser
        .find(Locator::Css("input[name=edit-scope][value='read:reports']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .find(Locator::Id("edit-metadata"))
        .await
        .unwrap()
        .send_keys("team=web")
        .await
        .unwrap();
    browser
        .find(Locator::Id("save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let row = wait()
        .for_element(Locator::XPath(
            "//tbody/tr[td[1][normalize-space()='browser key (edited)'] and td[4][normalize-space()='read:rules']]",
        ))
        .await
        .expect("the list shows the new name and the narrowed scopes");
    assert!(browser
        .find(Locator::Css("#edit-panel[hidden]"))
        .await
        .is_ok());
    let id = row.attr("data-id").await.unwrap().unwrap();
    // The audit panel shows the update first, with the name before and after.
    let audited = wait()
        .for_element(Locator::Css("#audit tbody tr[data-action='key.updated']"))
        .await
        .expect("the update in the audit panel");
    let said = audited.text().await.unwrap();
    assert!(
        said.contains("name: browser key → browser key (edited)"),
        "{said:?}"
    );
    assert!(said.contains(&id) && said.contains("session"), "{said:?}");

    // Opened, then changed elsewhere (this page's own session, without If-Match), then
    // saved: 412, shown, and the other change kept.
    open_editor(browser, "browser key (edited)").await;
    let status = browser
        .execute(
            "const csrf = document.cookie.split('; ').find((c) => c.startsWith('forge_csrf=')).slice(11);
             return fetch('/v1/keys/' + arguments[0], { method: 'PATCH', credentials: 'same-origin',
               headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
               body: JSON.stringify({ metadata: { team: 'ops' } }) }).then((r) => r.status);",
            vec![json!(id)],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(200));
    browser
        .find(Locator::Id("save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let error = wait()
        .for_element(Locator::Css("#edit-error:not(:empty)"))
        .await
        .expect("the refusal is shown");
    let said = error.text().await.unwrap();
    assert!(said.contains("changed since you read it"), "{said:?}");
    // The refused save is audited too (after a reload of the panel).
    browser.execute("return loadAudit()", vec![]).await.unwrap();
    wait()
        .for_element(Locator::XPath(
            "//table[@id='audit']/tbody/tr[1][td[2]='key.updated' and contains(td[5], '412')]",
        ))
        .await
        .expect("the 412 in the audit panel");
    browser
        .find(Locator::Id("cancel-edit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Clicks Edit on the row of key `name` and waits for the form.
async fn open_editor(browser: &fantoccini::Client, name: &str) {
    let wait = || browser.wait().at_most(Duration::from_secs(15));
    let xpath = format!("//tbody/tr[td[1][normalize-space()='{name}']]");
    let row = wait()
        .for_element(Locator::XPath(&xpath))
        .await
        .expect("the key's row");
    row.find(Locator::Css("button.edit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait()
        .for_element(Locator::Css("#edit-panel:not([hidden])"))
        .await
        .expect("the edit form");
}

/// Registers the quickstart's own receiver in the page: the secret is shown once and the
/// list shows the endpoint; an `http://` URL off loopback is refused with the field named.
pub(super) async fn webhook_in_the_page(browser: &fantoccini::Client, base: &str) {
    let wait = || browser.wait().at_most(Duration::from_secs(15));
    let field = browser.find(Locator::Id("webhook-url")).await.unwrap();
    field
        .send_keys("http://hooks.example.com/forge")
        .await
        .unwrap();
    browser
        .find(Locator::Id("add-webhook"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let refused = wait()
        .for_element(Locator::Css("#webhook-error:not(:empty)"))
        .await
        .expect("the refusal is shown")
        .text()
        .await
        .unwrap();
    assert!(refused.contains("url:"), "{refused:?}");
    field.clear().await.unwrap();
    field
        .send_keys(&format!("{base}/demo/webhook"))
        .await
        .unwrap();
    browser
        .find(Locator::Id("add-webhook"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let secret = wait()
        .for_element(Locator::Css(
            "#webhook-secret:not([hidden]) #webhook-secret-value",
        ))
        .await
        .expect("the secret, once")
        .text()
        .await
        .unwrap();
    assert!(secret.starts_with("whsec_"), "{secret:?}");
    let row = wait()
        .for_element(Locator::Css("#webhooks tbody tr"))
        .await
        .expect("the endpoint listed")
        .text()
        .await
        .unwrap();
    assert!(row.contains("/demo/webhook"), "{row:?}");
    assert!(!row.contains(&secret[6..]), "never the secret in the list");
}
