//! Writes the GPT-2 BPE token file of a text file:
//!
//! ```text
//! cargo run -p locus-workloads --features tokenizer --example tokenize -- \
//!     data/corpus/shakespeare.txt data/corpus/shakespeare.tokens.bin
//! ```

use std::path::Path;

use locus_workloads::gpt::tokens::{tokenize_gpt2, unigram_entropy};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: tokenize INPUT.txt OUTPUT.tokens.bin");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(Path::new(input)).expect("read the text");
    let tokens = tokenize_gpt2(&text).expect("tokenize");
    std::fs::write(Path::new(output), tokens.to_le_bytes()).expect("write the token file");
    println!(
        "{input}: {} bytes -> {output}: {} tokens, unigram entropy {:.4} nats, blake3 {}",
        text.len(),
        tokens.len(),
        unigram_entropy(tokens.ids()),
        blake3::Hash::from(tokens.digest()).to_hex()
    );
}
