//! A seeded, bounded, structure-aware random driver for the fuzz targets, for the stable
//! toolchain and CI: it starts from valid inputs (real request bodies, minted tokens,
//! encoded audit rows, encoded field sets) and mutates them with byte flips, splices and a
//! dictionary of troublesome values. Not coverage-guided (cargo-fuzz is, see
//! `scripts/fuzz`), but it runs everywhere and replays exactly from its seed.

use std::time::{Duration, Instant};

/// splitmix64.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// Values that have broken parsers before: boundaries, Unicode case and space oddities,
/// digit runs that look like card numbers, JSON edge cases.
pub const DICTIONARY: &[&str] = &[
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "\\udc00",
    "\u{0}",
    "\u{7f}",
    "\u{85}",
    "\u{a0}",
    "\u{200b}",
    "\u{2028}",
    "\u{feff}",
    "\u{3000}",
    "\u{212a}",
    "\u{130}",
    "ß",
    "ﬃ",
    "０１２３",
    "@",
    "@@",
    ".",
    "..",
    "+",
    "00",
    "-",
    "(",
    " ",
    "\t",
    "\n",
    "4111111111111111",
    "4111 1111 1111 1111",
    "378282246310005",
    "1e308",
    "1e400",
    "-0",
    "0.0",
    "6729.0",
    "18446744073709551616",
    "-9223372036854775809",
    "9007199254740993",
    "null",
    "true",
    "[]",
    "{}",
    "[[[[[[[[[[",
    "{\"a\":",
    "cst_op_",
    "cst_app_",
    "cst_adm_",
    "system",
    "admin.",
    "ctl_",
    "sub_",
    "rec_",
    "req_",
    "\u{1f}",
];

/// Mutates `input` a few times.
pub fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next_u64() as u8;
            }
            2 if !v.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 if !v.is_empty() => {
                // Duplicate a slice (repeated keys, repeated values).
                let s = rng.below(v.len());
                let e = (s + 1 + rng.below(32)).min(v.len());
                let piece = v[s..e].to_vec();
                v.splice(at..at, piece);
            }
            4 => {
                let n = 1 + rng.below(300);
                let b = *rng.pick(b"a0 9@.\"\\{}[],:");
                v.splice(at..at, std::iter::repeat_n(b, n));
            }
            _ => {
                let w = rng.pick(DICTIONARY).as_bytes().to_vec();
                v.splice(at..at, w);
            }
        }
    }
    v
}

/// Runs `target` on mutations of `seeds` until `iterations` inputs or `budget` elapsed,
/// whichever comes first; returns how many inputs ran.
pub fn drive(
    seed: u64,
    seeds: &[Vec<u8>],
    iterations: usize,
    budget: Duration,
    target: impl Fn(&[u8]),
) -> usize {
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut n = 0;
    for s in seeds {
        target(s);
        n += 1;
    }
    while n < iterations && started.elapsed() < budget {
        let base = if seeds.is_empty() || rng.below(8) == 0 {
            (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect()
        } else {
            rng.pick(seeds).clone()
        };
        target(&mutate(&mut rng, &base));
        n += 1;
    }
    n
}

/// Valid request bodies of every type, to mutate.
pub fn json_seeds() -> Vec<Vec<u8>> {
    let fields = r#"{"name":{"category":"user.name","value":"Alice Martin"},"email":{"category":"user.contact.email","value":"Alice@Example.org"},"phone":{"category":"user.contact.phone_number","value":"+33 6 12 34 56 78"},"customer":{"category":"user.unique_id","value":"C-42"},"age":{"category":"user.demographic","value":42},"vip":{"category":"user.demographic","value":true}}"#;
    [
        r#"{"name":"Acme SAS","region":"osc-fr1","agreement_effective":"2026-01-01","governing_law":"FR"}"#.to_owned(),
        r#"{"role":"controller_app","label":"app","expires_in_seconds":3600,"purposes":["support"],"operations":["retrieval"]}"#.to_owned(),
        format!(r#"{{"category":"customer","record":{{"fields":{fields},"source":"signup","recipients":["support"],"expires_at":"2030-01-01T00:00:00Z"}}}}"#),
        format!(r#"{{"fields":{fields}}}"#),
        r#"{"kind":"email","value":"alice@example.org"}"#.to_owned(),
        r#"{"kind":"phone","value":"0033 (6) 12-34-56-78"}"#.to_owned(),
        r#"{"right":"erasure","contact":"alice@example.org","message":"please"}"#.to_owned(),
        r#"{"action":"extend","months":1,"reason":"complex"}"#.to_owned(),
        r#"{"action":"fulfil","purpose":"support","objected_purpose":null,"note":"done"}"#.to_owned(),
        r#"{"name":"support","description":"why","lawful_basis":"contract","categories":["user"],"operations":["collection"],"retention_days":30}"#.to_owned(),
        format!(r#"{{"format":"custodian.subject-export/v1","controller":"ctl_01jd2r8k9m4q7s3t5v6w8x0y2z","exported_at":"2026-01-01T00:00:00Z","subject":{{"id":"sub_01jd2r8k9m4q7s3t5v6w8x0y2z","category":"customer","restricted":false,"objections":[],"created_at":"2026-01-01T00:00:00Z"}},"purposes":[{{"name":"support","description":"d","lawful_basis":"contract","retention_days":30}}],"records":[{{"id":"rec_01jd2r8k9m4q7s3t5v6w8x0y2z","purpose":"support","categories":["user.name"],"fields":{fields},"source":null,"recipients":[],"automated_decision":null,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","expires_at":"2027-01-01T00:00:00Z"}}]}}"#),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

pub fn lookup_seeds() -> Vec<Vec<u8>> {
    [
        "Alice.Martin+news@Example.FR",
        " bob@x.org ",
        "a@b.co",
        "+33 6 12 34 56 78",
        "0033 (6) 12-34-56-78",
        "+1.415.555.0100",
        "C-42",
        "\u{212a}@example.org",
        "ali\u{130}ce@example.org",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub fn token_seeds() -> Vec<Vec<u8>> {
    custodian_core::principal::Role::ALL
        .into_iter()
        .map(|r| {
            use secrecy::ExposeSecret;
            custodian_crypto::token::mint(r)
                .expect("mint")
                .secret
                .expose_secret()
                .as_bytes()
                .to_vec()
        })
        .collect()
}

pub fn audit_seeds() -> Vec<Vec<u8>> {
    let sep = "\u{1f}";
    let h = "h".repeat(32);
    [
        [
            "system",
            "1",
            "1700000000000000000",
            "operator_admin:cli",
            "admin.controller_created",
            "",
            "",
            "",
            "[]",
            "",
            "",
            &h,
            &h,
        ],
        [
            "ctl_01jd2r8k9m4q7s3t5v6w8x0y2z",
            "7",
            "1700000000000000001",
            "controller_app:tok_01jd2r8k9m4q7s3t5v6w8x0y2z",
            "retrieval",
            "support",
            "sub_01jd2r8k9m4q7s3t5v6w8x0y2z",
            "rec_01jd2r8k9m4q7s3t5v6w8x0y2z",
            "[\"email\",\"name\"]",
            "",
            "req_01jd2r8k9m4q7s3t5v6w8x0y2z",
            &h,
            &h,
        ],
        [
            "ctl_01jd2r8k9m4q7s3t5v6w8x0y2z",
            "8",
            "1700000000000000002",
            "controller_app:x",
            "collection",
            "support",
            "",
            "",
            "[]",
            "403: outside the purpose",
            "",
            &h,
            &h,
        ],
    ]
    .iter()
    .map(|cols| cols.join(sep).into_bytes())
    .collect()
}

/// Encoded field sets (`custodian_store::fieldset`): empty, one field with an empty
/// ciphertext, several fields given out of name order, the longest name, and as many fields
/// as a record may hold.
pub fn field_set_seeds() -> Vec<Vec<u8>> {
    use custodian_core::category::DataCategory;
    use custodian_core::record::{FieldName, MAX_FIELDS_PER_RECORD};
    use custodian_store::fieldset::encode;
    use custodian_store::rows::FieldRow;
    let row = |name: &str, category: &str, sealed: &[u8]| FieldRow {
        name: FieldName::parse(name).expect("field name"),
        category: DataCategory::parse(category).expect("catalogue category"),
        sealed: sealed.to_vec(),
    };
    let full: Vec<FieldRow> = (0..MAX_FIELDS_PER_RECORD)
        .map(|i| row(&format!("f{i}"), "user.demographic", &[i as u8; 3]))
        .collect();
    vec![
        encode(&[]),
        encode(&[row("name", "user.name", b"")]),
        encode(&[
            row(
                "phone",
                "user.contact.phone_number",
                b"\x00\x01nonce-ciphertext-tag",
            ),
            row("email", "user.contact.email", &[7; 300]),
            row("name", "user.name", b"\xff"),
            row("customer", "user.unique_id", &[0; 28]),
        ]),
        encode(&[row(
            &format!("a{}", "b".repeat(63)),
            "user.contact.address",
            &[0x42; 44],
        )]),
        encode(&full),
    ]
}
