//! What the quickstart prints at start: the keys, the demo login and curl lines.

use std::net::SocketAddr;

use super::{Demo, DemoKeys, DEMO_EMAIL, DEMO_PASSWORD, TRIAL_CREDITS};

pub(super) fn print_banner(addr: SocketAddr, keys: &DemoKeys, demo: &Demo) {
    let base = format!("http://{addr}");
    let live = keys.live.key().expose_secret();
    let test = keys.test.key().expose_secret();
    let fos = keys.fos.key().expose_secret();
    let trial = keys.trial.key().expose_secret();
    let live_id = &keys.live.record().id();
    let test_id = &keys.test.record().id();
    println!("tower-api-key quickstart listening on {base}\n");
    println!("Keys, shown once (the store keeps only their SHA-256 digests):");
    for (label, issued) in [
        ("live", &keys.live),
        ("test", &keys.test),
        ("fos ", &keys.fos),
        ("trial", &keys.trial),
    ] {
        let record = issued.record();
        println!(
            "  {label}  {}\n        id {}  scopes: {}",
            issued.key().expose_secret(),
            record.id(),
            record.scopes()
        );
    }
    println!("\nDemo login (browser sessions): {DEMO_EMAIL} / {DEMO_PASSWORD}");
    let login = format!(r#"{{"email":"{DEMO_EMAIL}","password":"{DEMO_PASSWORD}"}}"#);
    let csrf = "CSRF=$(awk '$6==\"forge_csrf\"{print $7}' cookies.txt)";
    #[cfg_attr(not(feature = "leak-intake"), allow(unused_mut))] // the leak line is pushed
    let mut tries = vec![
        ("public".to_owned(), format!("curl -i {base}/health")),
        (
            "readiness (the stores answer)".to_owned(),
            format!("curl -i {base}/health/ready"),
        ),
        (
            "metrics, Prometheus text format (serve on an internal port in production)".to_owned(),
            format!("curl -s {base}/metrics | grep tower_api_key"),
        ),
        ("200: live key, read:sessions".to_owned(), format!("curl -i {base}/v1/sessions -H 'Authorization: Bearer {live}'")),
        ("200: fos_ key in the ForgeOS header".to_owned(), format!("curl -i {base}/v1/rules -H 'X-ForgeOS-API-Key: {fos}'")),
        ("403 insufficient_scope: write:rules required".to_owned(), format!("curl -i -X POST {base}/v1/rules -H 'Authorization: Bearer {live}'")),
        ("201: the test key is admin".to_owned(), format!("curl -i -X POST {base}/v1/rules -H 'Authorization: Bearer {test}'")),
        ("401: no key".to_owned(), format!("curl -i {base}/v1/sessions")),
        (
            "200 x10, then 429 (AI routes: 10/min per key)".to_owned(),
            format!("for i in $(seq 11); do curl -s -o /dev/null -w '%{{http_code}} ' -X POST {base}/v1/reviews -H 'Authorization: Bearer {test}'; done; echo"),
        ),
        ("429 with Retry-After and RateLimit headers".to_owned(), format!("curl -i -X POST {base}/v1/reviews -H 'Authorization: Bearer {test}'")),
        (
            "200 x3, then 402: the live key's spend cap (30 units, 10 per review)".to_owned(),
            format!("for i in $(seq 4); do curl -s -o /dev/null -w '%{{http_code}} ' -X POST {base}/v1/reviews -H 'Authorization: Bearer {live}'; done; echo"),
        ),
        ("402 spend_cap_exceeded, Retry-After up to the month's end, Spend-Cap header".to_owned(), format!("curl -i -X POST {base}/v1/reviews -H 'Authorization: Bearer {live}'")),
        (
            format!("200 x2, then 402: the trial key's {TRIAL_CREDITS} units of one-time credits"),
            format!("for i in $(seq 3); do curl -s -o /dev/null -w '%{{http_code}} ' -X POST {base}/v1/reviews -H 'Authorization: Bearer {trial}'; done; echo"),
        ),
        ("402 without Retry-After or resets_at: credits never reset (Spend-Cap: limit=20, remaining=0)".to_owned(), format!("curl -i -X POST {base}/v1/reviews -H 'Authorization: Bearer {trial}'")),
        ("spend monitoring: the test keys' budgets (the test key has admin)".to_owned(), format!("curl -i {base}/api/billing/spend -H 'Authorization: Bearer {test}'")),
        ("log in: forge_session (HttpOnly) and forge_csrf cookies into cookies.txt".to_owned(), format!("curl -i -c cookies.txt -X POST {base}/auth/login -H 'Content-Type: application/json' -d '{login}'")),
        ("200: the session cookie authenticates (and shows the owner's plan)".to_owned(), format!("curl -i -b cookies.txt {base}/v1/me")),
        ("every budget of the owner, each with its period and reset (the dashboard draws them as bars)".to_owned(), format!("curl -i -b cookies.txt {base}/api/billing/spend")),
        ("403 csrf_failed: a state-changing request without the CSRF header".to_owned(), format!("curl -i -b cookies.txt -X POST {base}/v1/rules")),
        ("201: with the forge_csrf cookie's value in X-CSRF-Token".to_owned(), format!("{csrf}; curl -i -b cookies.txt -X POST {base}/v1/rules -H \"X-CSRF-Token: $CSRF\"")),
        ("log out: the session ends now, cookies cleared".to_owned(), format!("curl -i -b cookies.txt -c cookies.txt -X POST {base}/auth/logout -H \"X-CSRF-Token: $CSRF\"")),
        (
            "201: register an agent: a 14-day Pro trial (trial_ends_at) and a fos_ key scoped to it, with 1,000 AI units of credits (409 if the email is taken, 422 if the password is short)".to_owned(),
            format!(r#"AGENT=$(curl -s -X POST {base}/auth/register-agent -H 'Content-Type: application/json' -d '{{"email":"bot@example.com","password":"a long agent password"}}' | sed 's/.*"key":"\([^"]*\)".*/\1/'); echo $AGENT"#),
        ),
        ("the agent's plan: pro, until trial_ends_at; then free, and its fos_ key gets 403 plan_required".to_owned(), format!("curl -i {base}/v1/me -H \"X-ForgeOS-API-Key: $AGENT\"")),
        (
            "at most 2 reviews in flight per key: three at once (each thinking 1 s), one refused 429 with Retry-After: 1".to_owned(),
            format!("for i in 1 2 3; do curl -s -o /dev/null -w '%{{http_code}} ' -X POST '{base}/v1/reviews?think_ms=1000&tokens=100' -H \"X-ForgeOS-API-Key: $AGENT\" & done; wait; echo"),
        ),
        (
            "30,000 tokens a minute per key, each review reporting what it used: 10,000 each, 200 until the minute's tokens are spent, then 429 (RateLimit-Policy: \"tokens\")".to_owned(),
            format!("for i in 1 2 3 4; do curl -s -o /dev/null -w '%{{http_code}} ' -X POST '{base}/v1/reviews?tokens=10000' -H \"X-ForgeOS-API-Key: $AGENT\"; done; echo"),
        ),
        ("the dashboard: log in with the demo account, create, rotate and revoke keys".to_owned(), format!("open {base}/dashboard")),
        ("the management API: the owner's keys, newest first (keys with admin may manage)".to_owned(), format!("curl -i {base}/v1/keys -H 'Authorization: Bearer {test}'")),
        ("404: a test key never sees, rotates or revokes a live key".to_owned(), format!("curl -i -X POST {base}/v1/keys/{live_id}/revoke -H 'Authorization: Bearer {test}'")),
        ("the test key's version, its ETag (\"0\" until it changes)".to_owned(), format!("curl -s -D - -o /dev/null {base}/v1/keys/{test_id} -H 'Authorization: Bearer {test}' | grep -i etag")),
        ("update it in place, only if nobody changed it since (again: 412 precondition_failed)".to_owned(), format!("curl -i -X PATCH {base}/v1/keys/{test_id} -H 'Authorization: Bearer {test}' -H 'If-Match: \"0\"' -H 'Content-Type: application/json' -d '{{\"name\":\"renamed test key\"}}'")),
        ("the audit log: who changed what, from where, refusals too (newest first)".to_owned(), format!("curl -i '{base}/v1/audit?limit=5' -H 'Authorization: Bearer {test}'")),
        ("register a webhook to the quickstart's own receiver (the whsec_ secret is shown once)".to_owned(), format!("curl -i -X POST {base}/v1/webhooks -H 'Authorization: Bearer {test}' -H 'Content-Type: application/json' -d '{{\"url\":\"{base}/demo/webhook\"}}'")),
        (webhook_note(), format!("curl -s {base}/demo/webhook; curl -s {base}/v1/webhooks -H 'Authorization: Bearer {test}'")),
        ("revoke the test key through the management API (it has admin)".to_owned(), format!("curl -i -X POST {base}/v1/keys/{test_id}/revoke -H 'Authorization: Bearer {test}'")),
        ("401: revoked, from the next request on".to_owned(), format!("curl -i {base}/v1/sessions -H 'Authorization: Bearer {test}'")),
    ];
    #[cfg(feature = "leak-intake")]
    {
        let leaked = keys.fos.key().expose_secret();
        let (body, signature) = super::events::signed_report(&demo.events.scanner, leaked);
        tries.push((
            "report the fos_ key leaked, signed as a secret scanner would (GitHub's format): revoked, labelled true_positive, key.leaked to the webhook".to_owned(),
            format!("curl -i -X POST {base}/leaks -H 'Github-Public-Key-Identifier: quickstart-demo' -H 'Github-Public-Key-Signature: {signature}' -H 'Content-Type: application/json' -d '{body}'"),
        ));
    }
    #[cfg(not(feature = "leak-intake"))]
    let _ = demo;
    println!("\nTry:");
    for (what, line) in tries {
        println!("  # {what}\n  {line}");
    }
}

/// What the receiver's line says, by whether this build sends webhooks.
pub(super) fn webhook_note() -> String {
    if cfg!(feature = "webhooks") {
        "after any key change: what the receiver got, and the endpoint's delivery state".to_owned()
    } else {
        "the outbox fills; deliveries need `--features webhooks` (the sender)".to_owned()
    }
}

/// A time as the crate's API writes it: RFC 3339, whole seconds, UTC.
pub(super) fn rfc3339(at: std::time::SystemTime) -> String {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs)
        .ok()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
