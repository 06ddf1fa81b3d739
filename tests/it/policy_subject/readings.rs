//! What a cell reads back: the owner's reports through the management API, and how many
//! requests reached the inner service.

use super::*;

/// [`World::report`]'s answer: the owner's reports, read through the management API with
/// a new login of the owner (not through the activity layer: reading is not use).
pub(super) struct ReportAt<'w> {
    pub(super) world: &'w World,
    pub(super) owner: String,
    pub(super) app: axum::Router,
}

impl ReportAt<'_> {
    async fn get(&self, path: &str) -> serde_json::Value {
        let Credential::Session(cookie) = self.world.login(&self.owner).await else {
            unreachable!("a login is a session")
        };
        let request = Request::get(path)
            .header("cookie", cookie)
            .body(axum::body::Body::empty())
            .unwrap();
        let answer = send(self.app.clone(), request).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {:?}", answer.body);
        answer.json()
    }

    /// What every budget in `GET /billing/spend` has spent, summed.
    pub(super) async fn spent(&self) -> u64 {
        let page = self.get("/billing/spend").await;
        page["data"]["budgets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|budget| budget["spent"].as_u64().unwrap())
            .sum()
    }

    /// Today's requests and spend in `GET /usage`, once the history has them (a Redis
    /// history is written in the background: at most 5 s).
    pub(super) async fn today(&self) -> (u64, u64) {
        let mut last = (0, 0);
        for _ in 0..500 {
            let page = self.get("/usage").await;
            let today = &page["data"][DAYS - 1];
            let now = (
                today["requests"].as_u64().unwrap(),
                today["spent"].as_u64().unwrap(),
            );
            if now.0 >= 2 * TRIES as u64 {
                return now;
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        last
    }
}

pub(super) fn none() -> KeyId {
    KeyId::new("key_000000000000000000000000").unwrap()
}

/// How many of `TRIES` requests with `credential` reach the inner service.
pub(super) async fn admitted<S, RB>(service: &S, probe: &Probe, credential: &Credential) -> usize
where
    S: tower::Service<Request<String>, Response = http::Response<RB>> + Clone,
    S::Error: std::fmt::Debug,
    RB: http_body::Body<Data = bytes::Bytes>,
    RB::Error: std::fmt::Debug,
{
    let before = probe.calls();
    for _ in 0..TRIES {
        let status = send(service.clone(), credential.request()).await.status;
        assert!(
            status == StatusCode::OK || status.is_client_error(),
            "{credential:?}: {status}"
        );
    }
    probe.calls() - before
}
