//! Compiles `proto/locus/v1/*.proto` with `protox` (pure Rust, so the build
//! needs no `protoc` on the machine) and generates prost types from it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/locus/v1/locus.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
