//! Target `records`: the payload decoder of every record type. The first
//! input byte picks the type (table order in `lib.rs`), the rest is the
//! payload.
//!
//! The payload is decoded raw and, signed by the owner for [`OBJECT_KEY`],
//! through `envelope::open`: behind a valid signature the two must agree.
//! A decoded record is re-encoded (prost encoding is deterministic, so the
//! bytes must survive a second round) and its fields go through the
//! decoders a reader applies next (hotkeys, digests, sealed grants, tensors).

use locus_protocol::Digest;
use locus_protocol::envelope::{self, Expect, RejectReason};

use crate::{Fixture, KEYS, OBJECT_KEY, Visit, nth_record, seal_raw};

pub fn fuzz(data: &[u8]) {
    let Some((&index, payload)) = data.split_first() else {
        return;
    };
    nth_record(index.into(), &mut DecodeOne { payload });
}

struct DecodeOne<'a> {
    payload: &'a [u8],
}

impl Visit for DecodeOne<'_> {
    fn visit<T: Fixture>(&mut self) {
        let raw = T::decode(self.payload);
        if let Ok(record) = &raw {
            let bytes = record.encode_to_vec();
            let again = T::decode(bytes.as_slice()).expect("a re-encoded record decodes");
            assert_eq!(again.encode_to_vec(), bytes, "re-encoding is not stable");
            record.inspect();
        }
        let sealed = seal_raw(T::TYPE, self.payload, OBJECT_KEY, &KEYS.owner);
        let owner = KEYS.owner.hotkey();
        let opened = envelope::open::<T>(&sealed, OBJECT_KEY, Expect::Signer(&owner));
        match (&raw, &opened) {
            (Ok(record), Ok(verified)) => {
                assert_eq!(verified.digest(), Digest::of(self.payload));
                assert_eq!(verified.encode_to_vec(), record.encode_to_vec());
            }
            (Err(_), Err(e)) => {
                assert!(matches!(e.reason, RejectReason::BadPayload { .. }), "{e}");
            }
            _ => panic!("raw decode {raw:?} and signed open {opened:?} disagree"),
        }
    }
}
