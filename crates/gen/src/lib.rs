//! Deterministic synthetic data for one Douyin brand: native events across the three domains
//! (docs/events.md) and the true person behind every identity value.
//!
//! `siyu gen`, `siyu demo` and the benchmarks run it. Identity resolution, layering and
//! attribution are tested against its output, so it has to contain the cases those features
//! exist for, in roughly the proportions a real brand has.
//!
//! # The people
//! Each person turns up once, somewhere in the window (more towards its end, because the brand
//! is growing), at an hour when people are on their phones. One log-normal *affinity* drives how
//! likely they are to follow, how often they come back, how much they comment, whether they
//! leave leads and how often they buy. Because one number drives all of these, the heavy tail
//! is the same across behaviours: the fans who watch the most lives are also the ones who buy
//! again. The shares below are for 20,000 people over 90 days.
//! - **First touch**: a video in the feed (72%) or an Ocean Engine ad (28%).
//! - **Never follow (≈60%)**: a few more videos, ads or a homepage visit over the next two
//!   weeks, 3.7 events on average. About 7% of those reached by an ad leave an ad lead, and a
//!   few buy straight from an ad.
//! - **Followers (≈40%)**: about half follow on the spot, the rest days later. Then they have
//!   sessions at a personal rate during an active period (log-normal, median about six weeks).
//!   After that, 55% keep up a trickle of about a tenth of that rate and 45% stop. This is the
//!   decay that later moves fans down the layers. A session is videos (likes, comments,
//!   shares), one of the brand's lives (four evenings a week, 19:00–22:30 Asia/Shanghai: watch
//!   time, comments, live coupons), a homepage visit, a private-message conversation, fan-group
//!   chat, a coupon claim, or a store visit (6% live near a store). Other steps are placed on
//!   the same timeline. About 30% subscribe (a fifth of them later unsubscribe). About 22% join
//!   a fan group (a quarter leave, some join a second). 13% unfollow, and a quarter of those
//!   follow again.
//! - **Leads, the dedup problem**: about 26% of followers fill in 1–3 lead forms, and about a
//!   third of them use more than one channel. The channels identify people differently. A live
//!   form carries the open id, phone and lead id. An Ocean Engine ad form carries only the lead
//!   id and phone, with no open id. A private-message form carries the open id and phone, and
//!   half the time a lead id. 12% of people never give a phone (their leads carry only the
//!   open id). Phones come in seven spellings, all of which normalize to `+86…`.
//! - **WeCom**: sales add half of the phone leads on WeCom, and a few fans get there through
//!   private messages. Only the welcome message ties the external contact id to the person, by
//!   the phone they were added with or by their open id. Later WeCom conversations and WeCom
//!   groups carry only the external id, sometimes with the WeChat union id.
//! - **Shop**: about 5% buy and about a third of buyers buy again. Prices run from 19.9 to 1999
//!   CNY, sometimes with a coupon. About 7% of orders are refunded, a quarter of them in part.
//!   The first order is placed from Douyin, so it carries the open id with the shop user id:
//!   this is how the shop account links to the fan. Later orders carry the user id, with the
//!   open id 70% of the time, a phone 30% and an email (in mixed case) sometimes.
//! - **Family phones**: 1.1% of phone users write a family member's number. That family member
//!   is another person with another open id, so about 2% of people with a phone share it. Under
//!   deduplication by phone this is the case that must not merge.
//!
//! The mean number of events per person is `days / 8` from 45 days on (90 days: 11.3; 240
//! days: 30). The median person has 5 or 6 events; the 99th percentile has about 100 over 90
//! days and about 300 over 240. Shorter windows have more than `days / 8`, because everyone's
//! first touches dominate them. At the end of a 90-day window, the default layer rules (docs/layers.md)
//! give about 63% 潜在 Potential, 15% 路人 Passerby, 17% 好感 Favorable and 5% 真爱 TrueLove.
//!
//! # Determinism, speed, memory
//! Every person draws from their own ChaCha8 stream (key from the seed, stream = person index),
//! so a life can be drawn on its own and drawn again identically. Identity values are keyed
//! bijections of the person index, so they are unique by construction, not by chance. The same
//! `(fans, days, seed, end)` writes the same bytes on the same platform. The model's `ln`, `exp`
//! and `powf` come from the platform's libm, so different platforms could in principle differ
//! in a last bit and drift apart.
//!
//! A first pass draws only each person's opening draws: their first day, and whether they use a
//! phone (to pair family phones). A second pass draws whole lives in order of first day, and
//! writes day *d* as soon as everyone who appears by day *d* has been drawn. Only lives in
//! progress are held in memory, as 16-byte records. 1,000,000 people over 240 days (30 million
//! events) peak at about 225 MB and run at about 4 million events/s on one core.
//!
//! # Layout
//! - `world`: the brand's calendar (lives, videos, ads), groups, texts and the Shanghai clock.
//! - `person`: one person's life, drawn into a list of events.
//! - `event`: the compact event record and the packing of its type-specific word.
//! - `ids`: identity values, names and phone spellings, derived from (seed, person).
//! - `json`: JSON lines and the truth CSV.
//! - `draw`: the few distributions the model uses.

mod draw;
mod event;
mod ids;
mod json;
mod person;
mod world;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use event::{Rec, id};
use person::{Profile, Scratch, draw_life};
use world::{DAY, World};

/// What to generate: `fans` people over the `days` days ending at `end` (inclusive).
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub fans: u64,
    pub days: u32,
    pub seed: u64,
    pub end: jiff::Timestamp,
}

/// What was generated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GenSummary {
    /// People with at least one event (every generated person has one).
    pub people: u64,
    pub events: u64,
    /// Distinct (kind, normalized value) identity pairs in the events; a family-shared phone
    /// counts once.
    pub identities: u64,
    /// Phone numbers that appear under two (rarely three) different true persons.
    pub shared_phones: u64,
}

/// Events between two progress callbacks.
const PROGRESS_EVERY: u64 = 1 << 16;

/// Writes events as JSON lines in timestamp order (ties in a fixed order) to `out`, and if
/// `truth` is Some, writes the truth CSV. `progress` is called now and then with the number of
/// events written so far (for a progress bar).
///
/// Ties (equal milliseconds) are ordered by person index; one person never has two events in
/// the same millisecond. Fails with `InvalidInput` for `days` outside 1–36,500, more than
/// 2³² − 1 fans, or a window outside the years 1970–9999.
pub fn generate(
    cfg: &GenConfig,
    out: &mut dyn Write,
    truth: Option<&mut dyn Write>,
    progress: &mut dyn FnMut(u64),
) -> io::Result<GenSummary> {
    generate_at(cfg, world::intensity(cfg.days), out, truth, progress)
}

/// `generate` with a given activity level (the calibration test varies it).
fn generate_at(
    cfg: &GenConfig,
    intensity: f64,
    out: &mut dyn Write,
    truth: Option<&mut dyn Write>,
    progress: &mut dyn FnMut(u64),
) -> io::Result<GenSummary> {
    let end = cfg.end.as_millisecond();
    check(cfg, end)?;
    let mut w = World::new(cfg.seed, cfg.days, end);
    w.intensity = intensity;
    let n = cfg.fans as u32;
    let days = cfg.days as usize;

    // Pass 1: each person's first day, and who uses a phone (to pair family phones).
    const PHONE_USER: u8 = 1;
    const FAMILY: u8 = 2;
    let mut first_day = Vec::with_capacity(n as usize);
    let mut flags = Vec::with_capacity(n as usize);
    for p in 0..n {
        let mut rng = w.person_rng(p);
        let prof = Profile::draw(&w, &mut rng);
        first_day.push(bucket(&w, prof.start) as u32);
        flags.push(
            if prof.phone_user() { PHONE_USER } else { 0 } | if prof.family { FAMILY } else { 0 },
        );
    }
    // A family member shares the phone of the nearest earlier phone user who is not one
    // themselves: any other person will do (person indexes carry no meaning), and searching
    // only backwards keeps pairs from chaining.
    for p in 0..n {
        if flags[p as usize] == PHONE_USER | FAMILY {
            let owner = (p.saturating_sub(64)..p)
                .rev()
                .find(|&q| flags[q as usize] == PHONE_USER);
            if let Some(q) = owner {
                w.family.insert(p, q);
                w.family_owners.insert(q);
            }
        }
    }

    // People in order of their first day (a stable counting sort), so that day d can be written
    // as soon as everyone who appears by day d has been drawn: only lives in progress are held.
    let mut order_start = vec![0u32; days + 1];
    for &d in &first_day {
        order_start[d as usize + 1] += 1;
    }
    for d in 0..days {
        order_start[d + 1] += order_start[d];
    }
    let mut order = vec![0u32; n as usize];
    let mut fill = order_start.clone();
    for (p, &d) in first_day.iter().enumerate() {
        order[fill[d as usize] as usize] = p as u32;
        fill[d as usize] += 1;
    }
    drop(first_day);
    drop(fill);

    // Pass 2: draw lives day by day of first appearance, write each day once complete.
    // Per person: identity bits seen (low byte) and lead ids issued (high byte).
    let mut seen = vec![0u16; n as usize];
    let mut buckets: Vec<Vec<Rec>> = (0..days).map(|_| Vec::new()).collect();
    let mut scratch = Scratch::default();
    let mut lines = json::Lines::new(out, cfg.seed);
    for d in 0..days {
        for &p in &order[order_start[d] as usize..order_start[d + 1] as usize] {
            draw_life(&w, p, &mut scratch);
            seen[p as usize] = settle(&w, p, d, &mut scratch, &mut buckets);
        }
        let mut day = std::mem::take(&mut buckets[d]);
        let day_start = d as u64 * DAY as u64;
        day.sort_unstable_by_key(|r| ((r.rel_ms() - day_start) << 32) | r.person as u64);
        for r in &day {
            lines.event(&w, r)?;
            if lines.written().is_multiple_of(PROGRESS_EVERY) {
                progress(lines.written());
            }
        }
    }
    lines.flush()?;
    let events = lines.written();
    progress(events);

    let summary = summarize(&w, &seen, events);
    if let Some(truth) = truth {
        let mut b = Vec::with_capacity(FLUSH_TRUTH + 1024);
        b.extend_from_slice(b"kind,value,person\n");
        for (p, &s) in seen.iter().enumerate() {
            json::truth_rows(&mut b, &w, p as u32, s as u8, (s >> 8) as u8);
            if b.len() >= FLUSH_TRUTH {
                truth.write_all(&b)?;
                b.clear();
            }
        }
        truth.write_all(&b)?;
        truth.flush()?;
    }
    Ok(summary)
}

const FLUSH_TRUTH: usize = 1 << 20;
const MAX_DAYS: u32 = 36_500;

fn check(cfg: &GenConfig, end: i64) -> io::Result<()> {
    let bad = |m: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, m.to_string()));
    if cfg.days == 0 {
        return bad("days must be at least 1");
    }
    if cfg.fans > u32::MAX as u64 {
        return bad("at most 4294967295 fans");
    }
    // Keeps live and video indexes and offsets in seconds within their packed widths.
    if cfg.days > MAX_DAYS {
        return bad("at most 36500 days");
    }
    // 253402300799999 is 9999-12-31T23:59:59.999Z.
    let start = end - cfg.days as i64 * DAY;
    if start < 0 || end > 253_402_300_799_999 {
        return bad("the window must lie between 1970 and 9999");
    }
    Ok(())
}

/// Which day of the window (0-based) an instant falls in; the window is (base, end].
fn bucket(w: &World, t: i64) -> usize {
    ((t - w.base - 1) / DAY) as usize
}

/// Puts one drawn life in order, keeps what falls in the window, numbers its lead ids and hands
/// its events to the day buckets. Returns the person's identity bits and lead count.
fn settle(w: &World, p: u32, day: usize, scratch: &mut Scratch, buckets: &mut [Vec<Rec>]) -> u16 {
    let evs = &mut scratch.evs;
    // Stable: events drawn as cause then effect keep that order when they share a millisecond.
    evs.sort_by_key(|e| e.t);
    let mut last = i64::MIN;
    let mut bits = 0u16;
    let mut leads = 0u32;
    for e in evs.iter_mut() {
        // One person, one event per millisecond: then (time, person) orders the whole file.
        if e.t <= last {
            e.t = last + 1;
        }
        last = e.t;
        if e.t > w.end || e.t <= w.base {
            continue;
        }
        let b = bucket(w, e.t);
        // A life starts on its first day (pass 1 said so); earlier days are already written.
        debug_assert!(b >= day, "person {p} has an event before their first day");
        if b < day {
            continue;
        }
        if e.mask & id::LEAD != 0 {
            e.a = event::pack::lead_with_ordinal(e.a, leads);
            leads += 1;
        }
        bits |= e.mask & id::ALL;
        let rel = (e.t - w.base) as u64;
        buckets[b].push(Rec::new(rel, e, p));
    }
    bits | ((leads.min(255) as u16) << 8)
}

fn summarize(w: &World, seen: &[u16], events: u64) -> GenSummary {
    let owners: HashSet<u32> = w.family.values().copied().collect();
    let mut people = 0;
    let mut identities = 0;
    // Phones that a family member may share: owner → people writing that number.
    let mut family_phones: HashMap<u32, u32> = HashMap::new();
    for (p, &s) in seen.iter().enumerate() {
        let bits = s & id::ALL;
        if bits == 0 {
            continue;
        }
        people += 1;
        identities += (bits & !(id::PHONE | id::LEAD)).count_ones() as u64 + (s >> 8) as u64;
        if bits & id::PHONE != 0 {
            let owner = json::phone_key(w, p as u32);
            if owner == p as u32 && !owners.contains(&owner) {
                identities += 1;
            } else {
                *family_phones.entry(owner).or_default() += 1;
            }
        }
    }
    identities += family_phones.len() as u64;
    GenSummary {
        people,
        events,
        identities,
        shared_phones: family_phones.values().filter(|&&n| n >= 2).count() as u64,
    }
}

/// The expected number of events for a config, roughly (for sizing a progress bar).
pub fn estimate_events(cfg: &GenConfig) -> u64 {
    (cfg.fans as f64 * events_per_person(cfg.days)) as u64
}

/// Mean events per person by window length, as measured by the `calibration` test: `days / 8`
/// from 45 days on (what `world::intensity` is fitted to), more below that, where everyone's
/// first few touches weigh most.
fn events_per_person(days: u32) -> f64 {
    const SHORT: [(f64, f64); 4] = [(1.0, 2.0), (7.0, 3.0), (30.0, 4.9), (45.0, 5.625)];
    let d = days as f64;
    if d >= 45.0 {
        d / 8.0
    } else {
        world::interpolate(&SHORT, d)
    }
}
