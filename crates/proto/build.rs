fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc, so a fresh machine builds with `cargo build` alone.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure().compile_protos(
        &[
            "../../proto/raft.proto",
            "../../proto/roster.proto",
            "../../proto/backend.proto",
            // etcd's client API, for `roster bench quorum` only.
            "../../proto/etcd_kv.proto",
        ],
        &["../../proto"],
    )?;
    println!("cargo:rerun-if-changed=../../proto");
    Ok(())
}
