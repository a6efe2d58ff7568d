//! Leader-only work: backend heartbeats and liveness, the tablet scheduler and the per-FE
//! blacklist refresher. Empty until the backend-agent and scheduler issues land.
