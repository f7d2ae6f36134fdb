//! The fuzz harnesses under proptest with arbitrary bytes: the bounded run CI makes of every
//! fuzz target (long runs use cargo-fuzz: `scripts/fuzz.sh`).

use proptest::prelude::*;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..2048)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn pack_trailer(data in bytes()) {
        backup_fuzz::pack_trailer(&data);
    }

    #[test]
    fn snapshot(data in bytes()) {
        backup_fuzz::snapshot(&data);
    }

    #[test]
    fn index(data in bytes()) {
        backup_fuzz::index(&data);
    }

    #[test]
    fn key_envelope(data in bytes()) {
        backup_fuzz::key_envelope(&data);
    }

    #[test]
    fn config(data in bytes()) {
        backup_fuzz::config(&data);
    }
}
