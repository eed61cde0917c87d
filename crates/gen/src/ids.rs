//! Identity values (open ids, phones, lead ids, …) as pure functions of (seed, person).
//!
//! Nothing here is stored per person: the writer re-derives a value every time an event carries
//! it, which keeps a million people's records at a few bytes each. Uniqueness is by construction,
//! not by luck: every value starts from a keyed *bijection* of the person index (and, for lead
//! and order ids, an ordinal), so two people can only share a value where the model says so
//! (family phones).

/// SplitMix64's finalizer: a bijection on `u64` that scrambles well.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A keyed permutation of `[0, 2^bits)` (`bits` even, at most 64): four Feistel rounds.
pub(crate) fn feistel(x: u64, bits: u32, key: u64) -> u64 {
    let half = bits / 2;
    let mask = if half == 64 {
        u64::MAX
    } else {
        (1u64 << half) - 1
    };
    let (mut l, mut r) = ((x >> half) & mask, x & mask);
    for round in 0..4u64 {
        let f = mix64(r ^ key.wrapping_add(round.wrapping_mul(0x9e37_79b9_7f4a_7c15))) & mask;
        (l, r) = (r, l ^ f);
    }
    (l << half) | r
}

/// Per-kind keys, so that e.g. a person's open id says nothing about their phone.
#[derive(Debug, Clone)]
pub(crate) struct IdKeys {
    open: u64,
    dy_union: u64,
    wecom: u64,
    wx_union: u64,
    phone: u64,
    email: u64,
    lead: u64,
    user: u64,
    order: u64,
    name: u64,
}

impl IdKeys {
    pub(crate) fn new(seed: u64) -> IdKeys {
        let k = |salt: u64| mix64(seed ^ mix64(salt));
        IdKeys {
            open: k(1),
            dy_union: k(2),
            wecom: k(3),
            wx_union: k(4),
            phone: k(5),
            email: k(6),
            lead: k(7),
            user: k(8),
            order: k(9),
            name: k(10),
        }
    }
}

const ALPHA64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `n` characters of an opaque token whose first 64 bits are `h0` (so the token is as
/// unique as `h0`), the rest pseudo-random.
fn opaque(buf: &mut Vec<u8>, h0: u64, salt: u64, n: usize) {
    let mut block = h0;
    let mut h = h0;
    let mut left = 11; // 11 × 6 bits cover all 64 bits of h0
    for _ in 0..n {
        if left == 0 {
            block = mix64(block ^ salt);
            h = block;
            left = 10;
        }
        buf.push(ALPHA64[(h & 63) as usize]);
        h >>= 6;
        left -= 1;
    }
}

/// Appends `n` in decimal.
pub(crate) fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// Appends `n` in decimal, zero-padded to `width` digits.
pub(crate) fn push_padded(buf: &mut Vec<u8>, n: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut i = tmp.len();
    let mut m = n;
    while m > 0 {
        i -= 1;
        tmp[i] = b'0' + (m % 10) as u8;
        m /= 10;
    }
    let start = tmp.len() - width.max(tmp.len() - i);
    buf.extend_from_slice(&tmp[start..]);
}

impl IdKeys {
    /// `_000` + 32 characters, the shape of a Douyin open id.
    pub(crate) fn open_id(&self, buf: &mut Vec<u8>, person: u32) {
        buf.extend_from_slice(b"_000");
        opaque(buf, mix64(person as u64 ^ self.open), self.open, 32);
    }

    /// A UUID-shaped union id (Douyin's cross-app id).
    pub(crate) fn douyin_union_id(&self, buf: &mut Vec<u8>, person: u32) {
        let h0 = mix64(person as u64 ^ self.dy_union);
        let h1 = mix64(h0 ^ self.dy_union);
        for (i, nibble) in (0..32).map(|i| {
            let h = if i < 16 { h0 } else { h1 };
            (i, (h >> ((i % 16) * 4)) & 15)
        }) {
            if matches!(i, 8 | 12 | 16 | 20) {
                buf.push(b'-');
            }
            buf.push(HEX[nibble as usize]);
        }
    }

    /// `wm` + 30 characters, the shape of a WeCom external contact id.
    pub(crate) fn wecom_external_id(&self, buf: &mut Vec<u8>, person: u32) {
        buf.extend_from_slice(b"wm");
        opaque(buf, mix64(person as u64 ^ self.wecom), self.wecom, 30);
    }

    /// `o` + 27 characters, the shape of a WeChat union id.
    pub(crate) fn wechat_union_id(&self, buf: &mut Vec<u8>, person: u32) {
        buf.push(b'o');
        opaque(buf, mix64(person as u64 ^ self.wx_union), self.wx_union, 27);
    }

    /// The 11 digits of the mobile number owned by `phone_key` (a person index; family members
    /// use the owner's key).
    pub(crate) fn phone_digits(&self, phone_key: u32) -> [u8; 11] {
        // 46 real prefixes; y % 46 and y / 46 (< 10^8 for y < 2^32) together determine y, so
        // distinct keys get distinct numbers.
        const PREFIXES: [u16; 46] = [
            130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 145, 147, 149, 150, 151, 152, 153,
            155, 156, 157, 158, 159, 166, 170, 171, 172, 173, 175, 176, 177, 178, 180, 181, 182,
            183, 184, 185, 186, 187, 188, 189, 191, 193, 195, 198, 199,
        ];
        let y = feistel(phone_key as u64, 32, self.phone);
        let prefix = PREFIXES[(y % 46) as usize];
        let rest = y / 46;
        let mut d = [0u8; 11];
        d[0] = b'0' + (prefix / 100) as u8;
        d[1] = b'0' + (prefix / 10 % 10) as u8;
        d[2] = b'0' + (prefix % 10) as u8;
        let mut r = rest;
        for i in (3..11).rev() {
            d[i] = b'0' + (r % 10) as u8;
            r /= 10;
        }
        d
    }

    /// Appends the phone as one of seven real forms writes it; all normalize to `+86` + digits.
    pub(crate) fn phone(&self, buf: &mut Vec<u8>, phone_key: u32, format: u8) {
        let d = self.phone_digits(phone_key);
        let (a, b, c) = (&d[0..3], &d[3..7], &d[7..11]);
        match format {
            0 => buf.extend_from_slice(&d),
            1 => {
                buf.extend_from_slice(a);
                buf.push(b' ');
                buf.extend_from_slice(b);
                buf.push(b' ');
                buf.extend_from_slice(c);
            }
            2 => {
                buf.extend_from_slice(b"+86-");
                buf.extend_from_slice(&d);
            }
            3 => {
                buf.extend_from_slice(b"86");
                buf.extend_from_slice(&d);
            }
            4 => {
                buf.extend_from_slice(b"+86 ");
                buf.extend_from_slice(a);
                buf.push(b'-');
                buf.extend_from_slice(b);
                buf.push(b'-');
                buf.extend_from_slice(c);
            }
            5 => {
                buf.extend_from_slice(b"0086 ");
                buf.extend_from_slice(&d);
            }
            _ => {
                buf.extend_from_slice(b"(+86) ");
                buf.extend_from_slice(a);
                buf.push(b'.');
                buf.extend_from_slice(b);
                buf.push(b'.');
                buf.extend_from_slice(c);
            }
        }
    }

    /// The phone as ingest stores it.
    pub(crate) fn phone_normalized(&self, buf: &mut Vec<u8>, phone_key: u32) {
        buf.extend_from_slice(b"+86");
        buf.extend_from_slice(&self.phone_digits(phone_key));
    }

    /// An email, in one of four letter cases (`case` 0 is the normalized, lowercase form).
    pub(crate) fn email(&self, buf: &mut Vec<u8>, person: u32, case: u8) {
        const DOMAINS: [&[u8]; 5] = [b"qq.com", b"163.com", b"126.com", b"gmail.com", b"sina.com"];
        let v = feistel(person as u64, 32, self.email);
        let style = mix64(v ^ self.email) % 10;
        let start = buf.len();
        let domain = if style < 4 {
            // QQ mail: the QQ number is the address, 5–10 digits.
            push_u64(buf, v + 10_000);
            DOMAINS[0]
        } else {
            buf.extend_from_slice(name_parts(self, person).surname.pinyin.as_bytes());
            push_u64(buf, v);
            DOMAINS[1 + (style as usize - 4) % 4]
        };
        buf.push(b'@');
        buf.extend_from_slice(domain);
        match case {
            1 => buf[start] = buf[start].to_ascii_uppercase(),
            2 => {
                let at = buf.len() - domain.len();
                buf[at..].make_ascii_uppercase();
            }
            3 => buf[start..].make_ascii_uppercase(),
            _ => {}
        }
    }

    /// `clue_` + 19 digits; unique per (person, ordinal of the person's lead forms).
    pub(crate) fn lead_id(&self, buf: &mut Vec<u8>, person: u32, ordinal: u32) {
        buf.extend_from_slice(b"clue_");
        let x = ((person as u64) << 6) | (ordinal as u64 & 63);
        push_u64(buf, 1_000_000_000_000_000_000 + feistel(x, 60, self.lead));
    }

    /// A shop account id.
    pub(crate) fn user_id(&self, buf: &mut Vec<u8>, person: u32) {
        buf.extend_from_slice(b"SU");
        push_padded(buf, feistel(person as u64, 32, self.user), 10);
    }

    /// A 19-digit shop order number, unique per (person, ordinal of the person's orders).
    pub(crate) fn order_id(&self, buf: &mut Vec<u8>, person: u32, ordinal: u32) {
        let x = ((person as u64) << 8) | (ordinal as u64 & 255);
        push_u64(buf, 4_000_000_000_000_000_000 + feistel(x, 60, self.order));
    }

    /// The name a person writes on a lead form, in one of four habits (full name, 王女士, the
    /// given name alone, 王姐): the same person rarely writes it the same way twice.
    pub(crate) fn lead_name(&self, buf: &mut Vec<u8>, person: u32, variant: u8) {
        let n = name_parts(self, person);
        match variant {
            1 => {
                buf.extend_from_slice(n.surname.hanzi.as_bytes());
                buf.extend_from_slice(if n.female { "女士" } else { "先生" }.as_bytes());
            }
            2 => buf.extend_from_slice(n.given.as_bytes()),
            3 => {
                buf.extend_from_slice(n.surname.hanzi.as_bytes());
                buf.extend_from_slice(if n.female { "姐" } else { "哥" }.as_bytes());
            }
            _ => {
                buf.extend_from_slice(n.surname.hanzi.as_bytes());
                buf.extend_from_slice(n.given.as_bytes());
            }
        }
    }
}

pub(crate) struct Surname {
    hanzi: &'static str,
    pinyin: &'static str,
}

struct NameParts {
    surname: &'static Surname,
    given: &'static str,
    female: bool,
}

/// The most common surnames, roughly in order of frequency (the pick below favours the front).
const SURNAMES: [Surname; 24] = {
    const fn s(hanzi: &'static str, pinyin: &'static str) -> Surname {
        Surname { hanzi, pinyin }
    }
    [
        s("王", "wang"),
        s("李", "li"),
        s("张", "zhang"),
        s("刘", "liu"),
        s("陈", "chen"),
        s("杨", "yang"),
        s("黄", "huang"),
        s("赵", "zhao"),
        s("吴", "wu"),
        s("周", "zhou"),
        s("徐", "xu"),
        s("孙", "sun"),
        s("马", "ma"),
        s("朱", "zhu"),
        s("胡", "hu"),
        s("郭", "guo"),
        s("何", "he"),
        s("林", "lin"),
        s("罗", "luo"),
        s("高", "gao"),
        s("郑", "zheng"),
        s("梁", "liang"),
        s("谢", "xie"),
        s("宋", "song"),
    ]
};

const GIVEN_FEMALE: [&str; 20] = [
    "丽", "静", "敏", "燕", "芳", "娜", "婷婷", "雪", "丽娜", "晓燕", "欣怡", "佳怡", "雨萱",
    "梦琪", "秀英", "桂芳", "玉兰", "思雨", "慧", "颖",
];
const GIVEN_MALE: [&str; 16] = [
    "伟", "强", "磊", "军", "洋", "勇", "杰", "涛", "浩然", "子轩", "俊杰", "建华", "志强", "明",
    "鹏", "宇航",
];

fn name_parts(keys: &IdKeys, person: u32) -> NameParts {
    let h = mix64(person as u64 ^ keys.name);
    // Beauty and daily-goods brands on Douyin skew female; so do their lead forms.
    let female = h % 100 < 68;
    let a = ((h >> 8) % 24) as usize;
    let b = ((h >> 16) % 24) as usize;
    let surname = &SURNAMES[a.min(b)];
    let given = if female {
        GIVEN_FEMALE[((h >> 24) % GIVEN_FEMALE.len() as u64) as usize]
    } else {
        GIVEN_MALE[((h >> 24) % GIVEN_MALE.len() as u64) as usize]
    };
    NameParts {
        surname,
        given,
        female,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feistel_is_a_permutation() {
        let mut seen = std::collections::HashSet::new();
        for x in 0..1u64 << 12 {
            assert!(seen.insert(feistel(x, 12, 42)));
        }
        assert!(seen.iter().all(|&y| y < 1 << 12));
    }

    #[test]
    fn padded_numbers() {
        let mut b = Vec::new();
        push_padded(&mut b, 42, 5);
        push_padded(&mut b, 0, 3);
        push_padded(&mut b, 123_456, 3);
        assert_eq!(b, b"00042000123456");
    }

    #[test]
    fn phones_are_chinese_mobiles_and_distinct() {
        let k = IdKeys::new(7);
        let mut seen = std::collections::HashSet::new();
        for p in 0..50_000 {
            let d = k.phone_digits(p);
            assert_eq!(d[0], b'1');
            assert!((b'3'..=b'9').contains(&d[1]));
            assert!(seen.insert(d));
        }
    }
}
