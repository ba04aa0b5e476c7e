//! Writes the seed corpus into `<dir>/<target>/` (default `corpus/`): real
//! objects as the daemons write them, so the fuzzer starts from inputs that
//! get past the first checks. Generated on every run by scripts/fuzz.sh and
//! never committed. Also fails when the fuzz crate has drifted from the
//! protocol: a record type missing from the table, or a `seal_raw` that no
//! longer signs what `envelope::seal` signs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use locus_fuzz::fixtures::sample_grant;
use locus_fuzz::{
    Fixture, KEYS, NETUID, OBJECT_KEY, RECORD_COUNT, RUN, Visit, each_record, seal_raw, table_types,
};
use locus_protocol::envelope;
use locus_protocol::tensor::F32Tensor;
use locus_protocol::{Layout, grant, pb, record};
use prost::Message as _;

fn main() -> ExitCode {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let mut missing: Vec<_> = record::TYPES
        .iter()
        .filter(|t| !table_types().contains(t))
        .collect();
    missing.sort();
    if !missing.is_empty() || RECORD_COUNT != record::TYPES.len() {
        eprintln!("fuzz record table is out of date; add to lib.rs and fixtures.rs: {missing:?}");
        return ExitCode::FAILURE;
    }
    let mut seeds = Seeds { dir, count: 0 };
    each_record(&mut seeds);
    seeds.tensors();
    seeds.grants();
    seeds.paths();
    seeds.key_files();
    println!("wrote {} seeds under {}", seeds.count, seeds.dir.display());
    ExitCode::SUCCESS
}

struct Seeds {
    dir: PathBuf,
    count: usize,
}

impl Seeds {
    fn write(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.dir.join(target);
        std::fs::create_dir_all(&dir).expect("creating the corpus directory");
        std::fs::write(dir.join(name), bytes).expect("writing a seed");
        self.count += 1;
    }

    fn tensors(&mut self) {
        let artifact = pb::TensorArtifact::sample();
        self.write("tensor", "artifact", &artifact.encode_to_vec());
        for tensor in &artifact.tensors {
            self.write(
                "tensor",
                &format!("tensor-{}", tensor.name),
                &tensor.encode_to_vec(),
            );
        }
        // The raw layout of `locus_fuzz::tensor::from_raw`: a 2x3 tensor.
        let mut raw = vec![2u8];
        raw.extend(2u64.to_le_bytes());
        raw.extend(3u64.to_le_bytes());
        for v in F32Tensor::new(vec![2, 3], vec![1.0; 6]).values {
            raw.extend(v.to_le_bytes());
        }
        self.write("tensor", "raw-2x3", &raw);
    }

    fn grants(&mut self) {
        let (miner, owner) = (KEYS.miner.hotkey(), KEYS.owner.hotkey());
        let to_miner = sample_grant(miner);
        let sealed = grant::seal(&to_miner, &miner).expect("sealing a grant");
        self.write("grant", "0-sealed", &[&[0u8][..], &sealed].concat());
        let other = grant::seal(&sample_grant(owner), &owner).expect("sealing a grant");
        self.write(
            "grant",
            "0-sealed-to-another",
            &[&[0u8][..], &other].concat(),
        );
        let plain = to_miner.encode_to_vec();
        self.write("grant", "1-plain", &[&[1u8][..], &plain].concat());
        let naming_owner = sample_grant(owner).encode_to_vec();
        self.write(
            "grant",
            "1-plain-wrong-hotkey",
            &[&[1u8][..], &naming_owner].concat(),
        );
        let assignment = pb::Assignment::sample().encode_to_vec();
        self.write("grant", "2-assignment", &[&[2u8][..], &assignment].concat());
    }

    fn paths(&mut self) {
        let layout = Layout::new(NETUID);
        let miner = KEYS.miner.hotkey();
        let job = "s00001-inner-m00-r01";
        let keys = [
            ("run", layout.run_manifest(RUN)),
            ("state", layout.run_state(RUN)),
            ("job", layout.job_manifest(RUN, job)),
            ("artifact", layout.artifact(RUN, job, 1)),
            ("receipt", layout.receipt(RUN, 1, job, 1)),
            ("verdict", layout.verdict(RUN, 1, job, 1)),
            ("assignment", layout.assignment(&miner, 0, 12)),
            ("heartbeat", layout.heartbeat(&miner, 3)),
            ("heartbeat-grant", layout.heartbeat_grant(&miner)),
            ("scores", layout.score_window("w000001")),
            ("weights", layout.chain_weights("w000001")),
            ("ss58", miner.ss58()),
            ("hex", format!("0x{}", hex(&miner.to_bytes()))),
        ];
        for (name, key) in keys {
            self.write("paths", name, key.as_bytes());
        }
    }

    fn key_files(&mut self) {
        // Exactly what `locus keygen` writes (the writer refuses to overwrite).
        let path = self.dir.join("keyfile").join("locus.json");
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        remove_if_present(&path);
        KEYS.stranger
            .write_key_file(&path)
            .expect("writing a key file");
        self.count += 1;
        // The shape of a Bittensor wallet hotkey, with the fields Locus ignores.
        let hotkey = KEYS.stranger.hotkey();
        let public = format!("0x{}", hex(&hotkey.to_bytes()));
        let wallet = format!(
            r#"{{"accountId": "{public}", "publicKey": "{public}", "privateKey": "0x{}", "secretPhrase": null, "secretSeed": "0x{}", "ss58Address": "{}"}}"#,
            hex(&[0x5a; 64]),
            hex(&KEYS.stranger.seed()),
            hotkey.ss58(),
        );
        self.write("keyfile", "wallet.json", wallet.as_bytes());
    }
}

impl Visit for Seeds {
    /// An envelope of each type sealed by its usual signer, one sealed by a
    /// stranger, and the bare payload for the `records` target.
    fn visit<T: Fixture>(&mut self) {
        let record = T::sample();
        let name = T::TYPE.trim_start_matches("locus.v1.");
        let sealed = envelope::seal(&record, OBJECT_KEY, KEYS.get(T::ROLE));
        let payload = record.encode_to_vec();
        assert_eq!(
            seal_raw(T::TYPE, &payload, OBJECT_KEY, KEYS.get(T::ROLE)),
            sealed.bytes,
            "seal_raw no longer matches envelope::seal"
        );
        self.write("envelope", name, &sealed.bytes);
        let stranger = envelope::seal(&record, OBJECT_KEY, &KEYS.stranger);
        self.write("envelope", &format!("{name}-stranger"), &stranger.bytes);
        let index = table_types()
            .iter()
            .position(|t| *t == T::TYPE)
            .expect("in the table");
        let tagged = [&[index as u8][..], &payload].concat();
        self.write("records", name, &tagged);
    }
}

fn remove_if_present(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("removing {}: {e}", path.display()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
