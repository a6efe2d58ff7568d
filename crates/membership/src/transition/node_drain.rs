//! Draining a backend (`roster node drain`, `MODIFY BACKEND ... SET ("is_draining" = "true")`):
//! queries and loads are routed away by the ordinary admin flags, and the backend remembers
//! which of them the drain turned on, so that undrain gives the operator back exactly the flags
//! they had. Unlike a decommission, nothing moves: a drain is the precursor of a short stop.

use crate::model::backend::{Backend, Draining};

/// Turn on `disable_query` and `disable_load`, remembering which were off. Draining a drained
/// backend changes nothing.
pub fn drain(b: &mut Backend) {
    if b.draining.is_some() {
        return;
    }
    b.draining = Some(Draining {
        set_disable_query: !b.disable_query,
        set_disable_load: !b.disable_load,
    });
    b.disable_query = true;
    b.disable_load = true;
}

/// Turn off the flags the drain turned on (and only those). Harmless on a backend that is not
/// draining.
pub fn undrain(b: &mut Backend) {
    if let Some(d) = b.draining.take() {
        if d.set_disable_query {
            b.disable_query = false;
        }
        if d.set_disable_load {
            b.disable_load = false;
        }
    }
}

/// The operator sets `disable_query`: their word stands, and undrain will not touch it.
pub fn set_disable_query(b: &mut Backend, value: bool) {
    b.disable_query = value;
    if let Some(d) = &mut b.draining {
        d.set_disable_query = false;
    }
}

/// The operator sets `disable_load`: as `set_disable_query`.
pub fn set_disable_load(b: &mut Backend, value: bool) {
    b.disable_load = value;
    if let Some(d) = &mut b.draining {
        d.set_disable_load = false;
    }
}

#[cfg(test)]
mod tests {
    use crate::ClusterState;
    use crate::model::backend::{BackendRef, HostPort};
    use crate::model::ids::BackendId;
    use crate::transition::registry::{add_backends, modify_backends};

    fn set(s: &mut ClusterState, pairs: &[(&str, &str)]) {
        let props: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        modify_backends(s, &[BackendRef::Id(BackendId(10001))], &props).unwrap();
    }

    fn flags(s: &ClusterState) -> (bool, bool, bool) {
        let b = s.backends.get(&BackendId(10001)).unwrap();
        (b.disable_query, b.disable_load, b.draining.is_some())
    }

    fn one_backend() -> ClusterState {
        let mut s = ClusterState::default();
        add_backends(&mut s, 0, &[HostPort::new("127.0.9.1", 9050)], &[]).unwrap();
        s
    }

    #[test]
    fn undrain_restores_the_flags_the_operator_had() {
        let mut s = one_backend();
        set(&mut s, &[("disable_load", "true")]);
        set(&mut s, &[("is_draining", "true")]);
        assert_eq!(flags(&s), (true, true, true));
        // Repeating the drain does not forget what the first one turned on.
        set(&mut s, &[("is_draining", "true")]);
        set(&mut s, &[("is_draining", "false")]);
        assert_eq!(flags(&s), (false, true, false), "load stays disabled");
        set(&mut s, &[("is_draining", "false")]);
        assert_eq!(flags(&s), (false, true, false), "undrain twice is harmless");
    }

    #[test]
    fn a_flag_set_during_the_drain_belongs_to_the_operator() {
        let mut s = one_backend();
        set(&mut s, &[("is_draining", "true")]);
        set(&mut s, &[("disable_query", "true")]);
        set(&mut s, &[("is_draining", "false")]);
        assert_eq!(flags(&s), (true, false, false));
    }

    #[test]
    fn a_bad_value_changes_nothing() {
        let mut s = one_backend();
        let before = s.clone();
        let props = vec![
            ("is_draining".to_string(), "true".to_string()),
            ("disable_load".to_string(), "maybe".to_string()),
        ];
        assert!(modify_backends(&mut s, &[BackendRef::Id(BackendId(10001))], &props).is_err());
        assert_eq!(s, before);
    }
}
