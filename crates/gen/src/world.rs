//! The brand's side of the world: its calendar of live streams, the videos it posts, the ad
//! creatives it runs, and the clock people live by.
//!
//! All of it is fixed by the seed and the window before any person is drawn, so every person
//! meets the same lives and videos and ids can be shared strings built once.

use std::collections::HashMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::draw::{Draw, cumulative};
use crate::ids::{IdKeys, feistel, mix64, push_padded};

pub(crate) const SEC: i64 = 1_000;
pub(crate) const MIN: i64 = 60 * SEC;
pub(crate) const HOUR: i64 = 60 * MIN;
pub(crate) const DAY: i64 = 24 * HOUR;

/// Asia/Shanghai has been UTC+8 without daylight saving since 1991, so a constant offset is
/// exact for any window this generator will be asked for and far cheaper than a zone lookup.
const SHANGHAI: i64 = 8 * HOUR;

/// The local (Asia/Shanghai) day number of an instant (days since 1970-01-01 local).
pub(crate) fn local_day(t: i64) -> i64 {
    (t + SHANGHAI).div_euclid(DAY)
}

/// The instant local midnight of day `ld` begins.
pub(crate) fn local_midnight(ld: i64) -> i64 {
    ld * DAY - SHANGHAI
}

/// 0 = Monday … 6 = Sunday. 1970-01-01 was a Thursday.
pub(crate) fn weekday(ld: i64) -> u32 {
    (ld + 3).rem_euclid(7) as u32
}

/// How much more people do on a given weekday (×100); weekends are when people scroll most.
const WEEKDAY_WEIGHT: [u32; 7] = [100, 97, 100, 102, 112, 130, 124];
pub(crate) const MAX_WEEKDAY_WEIGHT: u32 = 130;

pub(crate) fn weekday_weight(ld: i64) -> u32 {
    WEEKDAY_WEIGHT[weekday(ld) as usize]
}

/// Douyin use by local hour: a lunch bump and a long evening peak, near nothing before dawn.
const HOUR_CDF: [u32; 24] = cumulative([
    30, 15, 8, 4, 3, 4, 10, 25, 35, 30, 30, 35, 55, 50, 35, 35, 35, 40, 50, 65, 80, 85, 70, 50,
]);

/// A time of day (ms after local midnight) at which people are on their phones.
pub(crate) fn time_of_day(rng: &mut ChaCha8Rng) -> i64 {
    let h = rng.pick(&HOUR_CDF) as i64;
    h * HOUR + rng.between(0, HOUR - 1)
}

/// Days the brand has been posting before the window opens; those videos still get views.
const BACK_VIDEOS: u32 = 40;
/// A new video every 16 hours (1.5 a day), the cadence of an active enterprise account.
const VIDEO_EVERY: i64 = 16 * HOUR;
/// A new ad creative every two days; a few run at once.
const AD_EVERY: i64 = 2 * DAY;
const BACK_ADS: u32 = 3;

pub(crate) struct Live {
    pub(crate) start: i64,
    pub(crate) end: i64,
}

/// Fan groups. The first five are Douyin fan groups, the last three WeCom customer groups
/// (joined only after being added on WeCom).
pub(crate) const GROUPS: [&str; 8] = [
    "grp_1", "grp_2", "grp_3", "grp_4", "grp_5", "grp_6", "grp_7", "grp_8",
];
pub(crate) const DOUYIN_GROUPS: u32 = 5;

pub(crate) const STORES: [&str; 5] = ["store_1", "store_2", "store_3", "store_4", "store_5"];
pub(crate) const COUPONS: [&str; 4] = ["cpn_new_5", "cpn_99_10", "cpn_199_30", "cpn_live_20"];

/// What customers write in private messages, roughly by how often they write it.
pub(crate) const TEXTS: [&str; 20] = [
    "请问还有货吗",
    "多少钱",
    "怎么购买",
    "在吗",
    "有优惠券吗",
    "发什么快递",
    "几天能到",
    "直播间的链接在哪",
    "可以退换吗",
    "尺码怎么选",
    "适合敏感肌吗",
    "有没有赠品",
    "什么时候开播",
    "能便宜点吗",
    "我的订单还没发货",
    "可以开发票吗",
    "有实体店吗",
    "怎么加入粉丝群",
    "想了解一下",
    "留个电话吧，详细说说",
];
pub(crate) const TEXT_CDF: [u32; 20] = cumulative([
    14, 14, 12, 10, 8, 6, 5, 5, 4, 4, 4, 3, 4, 3, 3, 2, 2, 3, 4, 2,
]);
/// Texts that precede a lead left in private messages (asking to buy or to be contacted).
pub(crate) const LEAD_TEXTS: [u32; 4] = [2, 1, 18, 19];

pub(crate) struct World {
    /// Unix ms of the window's start (exclusive) and end (inclusive).
    pub(crate) base: i64,
    pub(crate) end: i64,
    chacha_key: [u8; 32],
    pub(crate) keys: IdKeys,
    pub(crate) lives: Vec<Live>,
    pub(crate) live_ids: Vec<String>,
    pub(crate) video_ids: Vec<String>,
    pub(crate) ad_ids: Vec<String>,
    /// Scales everyone's session rate so that the mean events per person tracks days / 8.
    pub(crate) intensity: f64,
    /// Family members who use another person's phone: person → phone owner.
    pub(crate) family: HashMap<u32, u32>,
    /// Owners of phones that a family member also writes.
    pub(crate) family_owners: std::collections::HashSet<u32>,
}

impl World {
    pub(crate) fn new(seed: u64, days: u32, end: i64) -> World {
        let base = end - days as i64 * DAY;
        let mut chacha_key = [0u8; 32];
        for (i, chunk) in chacha_key.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&mix64(seed ^ mix64(0x5179_0000 + i as u64)).to_le_bytes());
        }
        let keys = IdKeys::new(seed);
        // The brand's own randomness uses a stream no person index can reach.
        let mut rng = ChaCha8Rng::from_seed(chacha_key);
        rng.set_stream(u64::MAX);

        // The brand streams on four fixed evenings a week (which four depends on the seed),
        // skipping one now and then and adding the odd extra stream before a sale.
        let mut weekdays: Vec<u32> = (0..7).collect();
        for i in (1..7).rev() {
            weekdays.swap(i, rng.below(i as u32 + 1) as usize);
        }
        let regular = &weekdays[..4];
        let mut lives = Vec::new();
        let mut live_ids = Vec::new();
        for ld in local_day(base)..=local_day(end) {
            let on = if regular.contains(&weekday(ld)) {
                !rng.chance(0.08)
            } else {
                rng.chance(0.05)
            };
            let start = local_midnight(ld) + 19 * HOUR + rng.between(0, 6) * 5 * MIN;
            let stop = local_midnight(ld) + 22 * HOUR + rng.between(0, 6) * 5 * MIN;
            if on && stop > base && start <= end {
                lives.push(Live { start, end: stop });
                let (y, m, d) = civil_from_days(ld);
                let mut id = b"live_".to_vec();
                push_padded(&mut id, y as u64, 4);
                push_padded(&mut id, m as u64, 2);
                push_padded(&mut id, d as u64, 2);
                live_ids.push(String::from_utf8(id).expect("ascii"));
            }
        }

        let videos = BACK_VIDEOS as i64 + (days as i64 * DAY) / VIDEO_EVERY + 1;
        let video_ids = (0..videos as u64)
            .map(|i| (7_000_000_000_000_000_000 + feistel(i, 58, mix64(seed ^ 0x71d))).to_string())
            .collect();
        let ads = BACK_ADS as i64 + (days as i64 * DAY) / AD_EVERY + 1;
        let ad_ids = (0..ads as u64)
            .map(|i| (1_700_000_000_000_000 + feistel(i, 46, mix64(seed ^ 0xad))).to_string())
            .collect();

        World {
            base,
            end,
            chacha_key,
            keys,
            lives,
            live_ids,
            video_ids,
            ad_ids,
            intensity: intensity(days),
            family: HashMap::new(),
            family_owners: Default::default(),
        }
    }

    /// Person `p`'s own random stream: independent of every other person's, so a person's life
    /// can be drawn (and drawn again) without drawing anyone else's.
    pub(crate) fn person_rng(&self, p: u32) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::from_seed(self.chacha_key);
        rng.set_stream(p as u64);
        rng
    }

    /// The first live that has not ended at `t` (it may be on now, or later).
    pub(crate) fn next_live(&self, t: i64) -> Option<usize> {
        let i = self.lives.partition_point(|l| l.end <= t);
        (i < self.lives.len()).then_some(i)
    }

    /// A video someone is shown at `t`: mostly the latest few, sometimes an older hit.
    pub(crate) fn video_at(&self, t: i64, rng: &mut ChaCha8Rng) -> u32 {
        let latest = (BACK_VIDEOS as i64 + (t - self.base).max(0) / VIDEO_EVERY)
            .min(self.video_ids.len() as i64 - 1) as u32;
        if rng.chance(0.1) {
            rng.below(latest + 1)
        } else {
            latest.saturating_sub(rng.geometric(1.8, 40))
        }
    }

    /// An ad creative running at `t`.
    pub(crate) fn ad_at(&self, t: i64, rng: &mut ChaCha8Rng) -> u32 {
        let latest = (BACK_ADS as i64 + (t - self.base).max(0) / AD_EVERY)
            .min(self.ad_ids.len() as i64 - 1) as u32;
        latest.saturating_sub(rng.below(BACK_ADS + 1))
    }
}

/// Session-rate multiplier by window length, fitted (the `fit_intensity` test) so that the
/// mean number of events per person is `days / 8` from 45 days on. It has to grow with the
/// window because lives are finite: a follower is active for weeks, then goes quiet, so a longer
/// window holds proportionally fewer active people. Below 45 days first touches alone exceed
/// `days / 8`, and the level stays at a floor that keeps followers plausibly active.
pub(crate) fn intensity(days: u32) -> f64 {
    const FIT: [(f64, f64); 10] = [
        (45.0, 0.248),
        (60.0, 0.397),
        (90.0, 0.595),
        (120.0, 0.743),
        (180.0, 1.000),
        (240.0, 1.228),
        (300.0, 1.452),
        (365.0, 1.669),
        (540.0, 2.226),
        (730.0, 2.786),
    ];
    interpolate(&FIT, days as f64).max(0.25)
}

/// Piecewise-linear through `points` (sorted by x), extended linearly past the last point and
/// flat before the first.
pub(crate) fn interpolate(points: &[(f64, f64)], x: f64) -> f64 {
    let i = points.partition_point(|p| p.0 < x);
    if i == 0 {
        return points[0].1;
    }
    let (a, b) = if i == points.len() {
        (points[i - 2], points[i - 1])
    } else {
        (points[i - 1], points[i])
    };
    a.1 + (x - a.0) * (b.1 - a.1) / (b.0 - a.0)
}

/// (year, month, day) of a day number counted from 1970-01-01 (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
