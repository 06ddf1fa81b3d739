//! The scan cursor, for every store: pages in id order that meet every record once, each
//! page at most the asked size; what is deleted meanwhile is not met, what was stored for
//! the whole scan is.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;

use tower_api_key::store::{KeyId, ManageKeys};

use super::{new_key, on_clock, Fixture};

/// Every id a scan by pages of `size` meets, in order, with the size of each page.
async fn scan<S: ManageKeys>(store: &S, size: usize) -> (Vec<KeyId>, Vec<usize>) {
    scan_after(store, None, size).await
}

/// The same from cursor `after` on.
async fn scan_after<S: ManageKeys>(
    store: &S,
    mut after: Option<KeyId>,
    size: usize,
) -> (Vec<KeyId>, Vec<usize>) {
    let size = NonZeroUsize::new(size).unwrap();
    let (mut ids, mut pages) = (Vec::new(), Vec::new());
    loop {
        let page = store.records_after(after.as_ref(), size).await.unwrap();
        pages.push(page.records.len());
        ids.extend(page.records.iter().map(|r| r.id().clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => return (ids, pages),
        }
        assert!(pages.len() < 1_000, "the scan ends");
    }
}

pub async fn a_scan_meets_every_record_once_in_id_order<F: Fixture>(fixture: &F) {
    let (store, _clock) = on_clock(fixture).await;
    let (ids, pages) = scan(&*store, 7).await;
    assert!(
        ids.is_empty() && pages == [0],
        "an empty store: one empty page"
    );

    let mut issued = BTreeSet::new();
    for n in 0..23 {
        let owner = format!("org_{}", n % 3);
        issued.insert(
            store
                .issue(new_key(&owner))
                .await
                .unwrap()
                .record()
                .id()
                .clone(),
        );
    }
    let (ids, pages) = scan(&*store, 7).await;
    assert_eq!(
        ids,
        issued.iter().cloned().collect::<Vec<_>>(),
        "every id once, in order"
    );
    assert!(pages.iter().all(|&n| n <= 7), "{pages:?}");
    assert_eq!(pages.iter().sum::<usize>(), 23);
    let (all_at_once, _) = scan(&*store, 100).await;
    assert_eq!(all_at_once, ids);
}

pub async fn a_scan_skips_what_is_deleted_and_meets_what_stays<F: Fixture>(fixture: &F) {
    let (store, _clock) = on_clock(fixture).await;
    let mut issued = Vec::new();
    for n in 0..12 {
        let owner = format!("org_{}", n % 2);
        issued.push(
            store
                .issue(new_key(&owner))
                .await
                .unwrap()
                .record()
                .id()
                .clone(),
        );
    }
    issued.sort();
    let first = store
        .records_after(None, NonZeroUsize::new(4).unwrap())
        .await
        .unwrap();
    let after = first.next.clone().expect("more to come");
    // Meanwhile: the last id is deleted and a key revoked (still a record).
    store.delete(issued.last().unwrap()).await.unwrap();
    store.revoke(&issued[6]).await.unwrap();
    let (rest, _) = scan_after(&*store, Some(after), 4).await;
    assert_eq!(rest, issued[4..11].to_vec(), "the deleted one is not met");
    assert!(store.get(&issued[6]).await.unwrap().is_some());
}
