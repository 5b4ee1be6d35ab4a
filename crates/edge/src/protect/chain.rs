//! Puts the protection layer in front of the hooks a caller installed: protection
//! decides first, the caller's filters see only what it let through, and both observe
//! offences.

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;

use super::{Guard, Protection};
use crate::hooks::{
    Abuse, AbuseObserver, Admission, ConnectionFilter, Hooks, RequestFilter, RequestInfo,
    RequestVerdict,
};

#[derive(Debug)]
struct Connections {
    first: Guard,
    then: Option<Arc<dyn ConnectionFilter>>,
}

impl ConnectionFilter for Connections {
    fn admit(&self, listener: &str, peer: SocketAddr) -> Admission {
        let token = match self.first.admit(listener, peer) {
            Admission::Refuse => return Admission::Refuse,
            Admission::Accept(t) => t,
        };
        match &self.then {
            None => Admission::Accept(token),
            Some(f) => match f.admit(listener, peer) {
                Admission::Refuse => Admission::Refuse,
                Admission::Accept(t2) => Admission::Accept(Some(Box::new((token, t2)))),
            },
        }
    }
}

#[derive(Debug)]
struct Requests {
    first: Guard,
    then: Option<Arc<dyn RequestFilter>>,
}

impl RequestFilter for Requests {
    fn check(&self, request: &RequestInfo<'_>) -> RequestVerdict {
        match self.first.check(request) {
            RequestVerdict::Continue => match &self.then {
                None => RequestVerdict::Continue,
                Some(f) => f.check(request),
            },
            v => v,
        }
    }

    fn responded(&self, listener: &str, route: Option<&str>, peer: SocketAddr, status: StatusCode) {
        self.first.responded(listener, route, peer, status);
        if let Some(f) = &self.then {
            f.responded(listener, route, peer, status);
        }
    }
}

#[derive(Debug)]
struct Observers {
    first: Guard,
    then: Option<Arc<dyn AbuseObserver>>,
}

impl AbuseObserver for Observers {
    fn observed(&self, listener: &str, peer: SocketAddr, abuse: Abuse) {
        self.first.observed(listener, peer, abuse);
        if let Some(o) = &self.then {
            o.observed(listener, peer, abuse);
        }
    }
}

/// `hooks` with `protection` in front of each.
pub fn install(hooks: Hooks, protection: Arc<Protection>) -> Hooks {
    let g = Guard(protection);
    Hooks {
        connection: Some(Arc::new(Connections {
            first: g.clone(),
            then: hooks.connection,
        })),
        request: Some(Arc::new(Requests {
            first: g.clone(),
            then: hooks.request,
        })),
        abuse: Some(Arc::new(Observers {
            first: g,
            then: hooks.abuse,
        })),
    }
}
