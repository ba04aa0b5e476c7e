#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| locus_fuzz::grant::fuzz(data));
