//! Generates the gRPC server and client of `proto/grpc_predict_v2.proto` with tonic-prost-build,
//! from a file descriptor set compiled by protox (pure Rust): no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/grpc_predict_v2.proto";
    println!("cargo:rerun-if-changed={proto}");
    // Also the directory: worktrees sharing one target dir share this script's output.
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure().build_transport(false).compile_fds(fds)?;
    Ok(())
}
