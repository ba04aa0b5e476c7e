//! The protobuf types are generated ahead of time into `src/pb/locus.v1.rs`
//! and committed, so that building the workspace compiles no protobuf
//! compiler (`protox`, `prost-build` and their parsers, about a minute of CPU
//! on every cold build). After editing `proto/locus/v1/locus.proto`,
//! regenerate them with
//!
//! ```text
//! cargo build -p locus-protocol --features protogen
//! ```
//!
//! which compiles the `.proto` with `protox` (pure Rust: no `protoc` needed),
//! generates prost types from it and writes them, headed by the BLAKE3 of
//! the `.proto` they came from. A unit test (`pb_is_current`) fails while
//! the two disagree.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "protogen")]
    protogen::write()?;
    Ok(())
}

#[cfg(feature = "protogen")]
mod protogen {
    pub const PROTO: &str = "proto/locus/v1/locus.proto";
    pub const GENERATED: &str = "src/pb/locus.v1.rs";

    pub fn write() -> Result<(), Box<dyn std::error::Error>> {
        println!("cargo:rerun-if-changed={PROTO}");
        let descriptors = protox::compile([PROTO], ["proto"])?;
        prost_build::Config::new().compile_fds(descriptors)?;
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
        let code = std::fs::read_to_string(out.join("locus.v1.rs"))?;
        let digest = blake3::hash(&std::fs::read(PROTO)?);
        let header = format!(
            "// Generated from {PROTO} by `cargo build -p locus-protocol --features protogen`\n\
             // (see build.rs); do not edit. Source BLAKE3: {digest}\n\n"
        );
        std::fs::create_dir_all("src/pb")?;
        std::fs::write(GENERATED, header + &code)?;
        Ok(())
    }
}
