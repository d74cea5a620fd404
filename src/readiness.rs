//! Whether the service should be sent checks: ready once every part that must load first (each
//! issuer's discovery and keys) has loaded, and not ready again from the start of shutdown. The
//! admin port's `/readyz`, gRPC health and the `ready` gauge all read this one value.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A part of the service that is unusable until it has loaded once.
pub trait Loaded: Send + Sync {
    fn is_loaded(&self) -> bool;
}

#[derive(Clone)]
pub struct Readiness {
    parts: Arc<[Arc<dyn Loaded>]>,
    draining: Arc<AtomicBool>,
}

impl Readiness {
    pub fn new(parts: Vec<Arc<dyn Loaded>>) -> Self {
        Self {
            parts: parts.into(),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Acquire) && self.parts.iter().all(|p| p.is_loaded())
    }

    /// Shutdown has begun: not ready from now on, whatever has loaded.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Flag(AtomicBool);

    impl Loaded for Flag {
        fn is_loaded(&self) -> bool {
            self.0.load(Ordering::Acquire)
        }
    }

    #[test]
    fn ready_when_every_part_has_loaded_and_until_draining() {
        let a = Arc::new(Flag(AtomicBool::new(true)));
        let b = Arc::new(Flag(AtomicBool::new(false)));
        let readiness = Readiness::new(vec![a, b.clone()]);
        assert!(!readiness.is_ready(), "one part still loading");
        b.0.store(true, Ordering::Release);
        assert!(readiness.is_ready());
        readiness.clone().start_draining();
        assert!(!readiness.is_ready(), "a clone shares the draining flag");
    }
}
