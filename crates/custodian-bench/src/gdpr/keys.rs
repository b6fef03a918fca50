//! GDPRbench's generators, ported from YCSB so that a run is the same run every time:
//! a seeded random source, the uniform and scrambled-zipfian key choosers, the operation
//! chooser, and the record values of key k exactly as GDPRBENCH.md gives them.

/// SplitMix64 (Steele, Lea, Flood 2014): a small seeded generator, ample for choosing keys.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits, as Java's `Random.nextDouble`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in lo..=hi (YCSB's `UniformLongGenerator`).
    pub fn uniform(&mut self, lo: u64, hi: u64) -> u64 {
        lo + (self.next_f64() * (hi - lo + 1) as f64) as u64
    }
}

/// YCSB's `ScrambledZipfianGenerator` as GDPRbench constructs it for a keyspace of
/// `items` keys: a `ZipfianGenerator` with theta 0.99 over 10^10 items (zeta precomputed,
/// as YCSB does), whose value goes through FNV-64 and then modulo the keyspace.
#[derive(Debug, Clone)]
pub struct ScrambledZipfian {
    items: u64,
    zipf_items: f64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

/// YCSB: `ScrambledZipfianGenerator.ITEM_COUNT`, `ZETAN`, `USED_ZIPFIAN_CONSTANT`.
const ITEM_COUNT: u64 = 10_000_000_000;
const ZETAN: f64 = 26.469_028_201_783_02;
const THETA: f64 = 0.99;

impl ScrambledZipfian {
    /// Keys in 0..items (YCSB's min = 0, max = items - 1).
    pub fn new(items: u64) -> Self {
        // ZipfianGenerator(0, ITEM_COUNT, 0.99, ZETAN): its item count is max - min + 1.
        let zipf_items = (ITEM_COUNT + 1) as f64;
        let zeta2theta = 1.0 + 1.0 / 2f64.powf(THETA);
        let eta = (1.0 - (2.0 / zipf_items).powf(1.0 - THETA)) / (1.0 - zeta2theta / ZETAN);
        Self {
            items,
            zipf_items,
            theta: THETA,
            alpha: 1.0 / (1.0 - THETA),
            zetan: ZETAN,
            eta,
        }
    }

    fn zipfian(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        (self.zipf_items * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64
    }

    pub fn next(&self, rng: &mut Rng) -> u64 {
        fnv64(self.zipfian(rng)) % self.items
    }
}

/// YCSB's `Utils.fnvhash64`, including its final `Math.abs` on a signed long.
pub fn fnv64(mut val: u64) -> u64 {
    let mut h: i64 = 0xCBF2_9CE4_8422_2325_u64 as i64;
    for _ in 0..8 {
        let octet = (val & 0xff) as i64;
        val >>= 8;
        h ^= octet;
        h = h.wrapping_mul(1_099_511_628_211);
    }
    h.wrapping_abs() as u64
}

/// How keys are chosen in the run phase.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    Uniform,
    Zipfian(ScrambledZipfian),
}

impl KeyChooser {
    /// A key in 0..=last (the last key inserted so far): uniform over the inserted range, or
    /// zipfian over the keyspace, drawing again above the last inserted key.
    pub fn next(&self, rng: &mut Rng, last: u64) -> u64 {
        match self {
            Self::Uniform => rng.uniform(0, last),
            Self::Zipfian(z) => loop {
                let k = z.next(rng);
                if k <= last {
                    return k;
                }
            },
        }
    }
}

/// YCSB's `DiscreteGenerator`: picks an item with probability proportional to its weight.
#[derive(Debug, Clone)]
pub struct Discrete<T: Copy> {
    items: Vec<(f64, T)>,
    sum: f64,
}

impl<T: Copy> Discrete<T> {
    pub fn new(items: &[(f64, T)]) -> Self {
        Self {
            sum: items.iter().map(|(w, _)| w).sum(),
            items: items.to_vec(),
        }
    }
    pub fn next(&self, rng: &mut Rng) -> T {
        let val = rng.next_f64();
        let mut acc = 0.0;
        for (w, t) in &self.items {
            acc += w / self.sum;
            if val < acc {
                return *t;
            }
        }
        self.items.last().expect("at least one item").1
    }
}

pub const TTLS: [u64; 10] = [
    30, 10_000, 12_000, 14_000, 16_000, 18_000, 20_000, 22_000, 24_000, 1_000_000,
];
pub const PURPOSES: u64 = 25;
pub const USERS: u64 = 10_000;

/// The ten fields of key k (GDPRBENCH.md, "Records"); DATA is 100 characters drawn from
/// a generator seeded by (seed, k, version) so every target stores the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Values {
    pub pur: u64,
    pub ttl: u64,
    pub usr: u64,
    pub obj: String,
    pub dec: String,
    pub acl: String,
    pub shr: String,
    pub src: String,
    pub cat: u64,
    pub data: String,
}

impl Values {
    pub fn of(k: u64, seed: u64, version: u64) -> Self {
        Self {
            pur: k % PURPOSES,
            ttl: TTLS[(k % 10) as usize],
            usr: k % USERS,
            obj: format!("obj{}", k % 100),
            dec: format!("dec{}", k % 2),
            acl: format!("acl{}", k % 10),
            shr: format!("shr{}", k % 10),
            src: format!("src{}", k % 10),
            cat: k % 10,
            data: data(k, seed, version),
        }
    }
    pub fn purpose(&self) -> String {
        format!("purpose{}", self.pur)
    }
    pub fn user(&self) -> String {
        format!("user{}", self.usr)
    }
    pub fn category(&self) -> String {
        format!("cat{}", self.cat)
    }
}

/// 100 characters of letters and spaces (no digits: nothing a card-number scan could flag).
pub fn data(k: u64, seed: u64, version: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng =
        Rng::new(seed ^ k.wrapping_mul(0x9E37_79B9) ^ version.wrapping_mul(0x85EB_CA6B) << 32);
    (0..100)
        .map(|_| ALPHABET[(rng.next_u64() % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// The metadata field update-meta picks (1..=8) and the value it sets for key k.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaField {
    Ttl = 1,
    Usr = 2,
    Obj = 3,
    Dec = 4,
    Acl = 5,
    Shr = 6,
    Src = 7,
    Cat = 8,
}

impl MetaField {
    pub fn from_index(i: u64) -> Self {
        match i {
            1 => Self::Ttl,
            2 => Self::Usr,
            3 => Self::Obj,
            4 => Self::Dec,
            5 => Self::Acl,
            6 => Self::Shr,
            7 => Self::Src,
            _ => Self::Cat,
        }
    }
    pub fn column(self) -> &'static str {
        match self {
            Self::Ttl => "ttl",
            Self::Usr => "usr",
            Self::Obj => "obj",
            Self::Dec => "dec",
            Self::Acl => "acl",
            Self::Shr => "shr",
            Self::Src => "src",
            Self::Cat => "cat",
        }
    }
    /// k's value of this field, as the plain baselines store it (text).
    pub fn text(self, v: &Values) -> String {
        match self {
            Self::Ttl => v.ttl.to_string(),
            Self::Usr => v.user(),
            Self::Obj => v.obj.clone(),
            Self::Dec => v.dec.clone(),
            Self::Acl => v.acl.clone(),
            Self::Shr => v.shr.clone(),
            Self::Src => v.src.clone(),
            Self::Cat => v.category(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_ycsb() {
        // YCSB's Utils.fnvhash64 (signed 64-bit FNV over the 8 bytes, then Math.abs).
        assert_eq!(fnv64(0), 6_284_781_860_667_377_211);
        assert_eq!(fnv64(1), 8_517_097_267_634_966_620);
        assert_eq!(fnv64(123_456_789), 2_350_796_791_908_741_607);
    }

    #[test]
    fn zipfian_is_skewed_and_in_range() {
        let z = ScrambledZipfian::new(10_000);
        let mut rng = Rng::new(1);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..100_000 {
            let k = z.next(&mut rng);
            assert!(k < 10_000);
            *counts.entry(k).or_insert(0u32) += 1;
        }
        let max = *counts.values().max().unwrap();
        assert!(
            max > 1000,
            "the most popular key should be drawn often: {max}"
        );
    }

    #[test]
    fn record_values_follow_the_spec() {
        let v = Values::of(12_345, 7, 0);
        assert_eq!(v.purpose(), "purpose20");
        assert_eq!(v.ttl, 18_000);
        assert_eq!(v.user(), "user2345");
        assert_eq!(v.obj, "obj45");
        assert_eq!(v.dec, "dec1");
        assert_eq!(v.data.chars().count(), 100);
        assert_eq!(v, Values::of(12_345, 7, 0));
        assert_ne!(v.data, Values::of(12_345, 7, 1).data);
        assert_eq!(
            (0..1000).filter(|k| Values::of(*k, 1, 0).ttl == 30).count(),
            100
        );
    }
}
