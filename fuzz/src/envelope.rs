//! Target `envelope`: bytes as read from a bucket key, opened as every record
//! type with every kind of `Expect`.
//!
//! Seeds are real envelopes sealed at [`OBJECT_KEY`], so mutations start from
//! objects whose signature verifies. The three `Expect`s must agree: a
//! signer-restricted open succeeds exactly when the unrestricted one does and
//! the signer is allowed.

use locus_protocol::envelope::{self, Expect};
use locus_protocol::{Digest, pb};
use prost::Message as _;

use crate::{Fixture, KEYS, OBJECT_KEY, Visit, each_record, keep};

pub fn fuzz(data: &[u8]) {
    each_record(&mut OpenAsEvery { data });
}

struct OpenAsEvery<'a> {
    data: &'a [u8],
}

impl Visit for OpenAsEvery<'_> {
    fn visit<T: Fixture>(&mut self) {
        let owner = KEYS.owner.hotkey();
        let any = envelope::open::<T>(self.data, OBJECT_KEY, Expect::AnySigner);
        let signer = envelope::open::<T>(self.data, OBJECT_KEY, Expect::Signer(&owner));
        let one_of = envelope::open::<T>(self.data, OBJECT_KEY, Expect::OneOf(&KEYS.one_of));
        match &any {
            Ok(verified) => {
                assert_eq!(verified.key(), OBJECT_KEY);
                assert_eq!(verified.size(), self.data.len());
                let payload = pb::Envelope::decode(self.data)
                    .expect("an opened envelope decodes")
                    .payload;
                assert_eq!(verified.digest(), Digest::of(&payload));
                assert_eq!(signer.is_ok(), *verified.signer() == owner);
                assert_eq!(one_of.is_ok(), KEYS.one_of.contains(verified.signer()));
                verified.inspect();
            }
            Err(e) => {
                assert!(signer.is_err() && one_of.is_err(), "{e}");
                keep(e.to_string());
            }
        }
        for result in [signer, one_of] {
            if let Err(e) = result {
                keep(e.to_string());
            }
        }
    }
}
