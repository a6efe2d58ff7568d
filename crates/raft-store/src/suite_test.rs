//! openraft's storage conformance suite against the redb log store and state machine.

use crate::{LogStore, StateMachineStore, TypeConfig};
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RedbBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("tempdir");
        // Not `crate::open`: the suite applies and snapshots entries it never appended, which
        // the gate between the two (`StateMachineStore::gate_on`) would rightly hold back.
        let fault = crate::integrity::Fault::new();
        let log = LogStore::open(&dir.path().join("log.redb"), fault.clone()).expect("open log");
        let sm = StateMachineStore::open(&dir.path().join("sm.redb"), fault)
            .expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes() {
    Suite::test_all(RedbBuilder)
        .await
        .expect("openraft storage suite");
}
