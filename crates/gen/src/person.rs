//! One person's life with the brand, drawn from their own random stream.
//!
//! A life has up to three phases: a *casual* phase (videos and ads drift past; most people
//! never get further), a *follower* phase (sessions at a personal rate while "active", then
//! decay), and *milestones* placed on that timeline (leads, WeCom add, subscribe, groups,
//! orders). Causal pairs are built as offsets from their cause (a refund from its order, a
//! group leave from its join), so ordering rules hold by construction rather than by filtering.

use rand_chacha::ChaCha8Rng;

use crate::draw::{Draw, cumulative};
use crate::event::{Ev, Kind, Source, channel, id, pack};
use crate::world::{
    COUPONS, DAY, DOUYIN_GROUPS, HOUR, LEAD_TEXTS, MAX_WEEKDAY_WEIGHT, MIN, SEC, STORES, TEXT_CDF,
    World, local_day, local_midnight, time_of_day, weekday_weight,
};

/// Share of phone users flagged as sharing a family member's number. Each flag makes two
/// people share one phone, so about twice this share of phone users end up sharing (~2%).
const FAMILY: f64 = 0.011;

/// How each of the seven phone spellings is chosen: plain digits most, the odd ones less.
const PHONE_FMT_CDF: [u32; 7] = cumulative([40, 12, 12, 8, 10, 8, 10]);
const EMAIL_CASE_CDF: [u32; 4] = cumulative([70, 12, 12, 6]);
const NAME_CDF: [u32; 4] = cumulative([45, 25, 15, 15]);
const CHANNEL_CDF: [u32; 3] = cumulative([45, 25, 30]);
const DOUYIN_GROUP_CDF: [u32; 5] = cumulative([5, 4, 3, 2, 1]);

/// Price points in fen, cheap items far more common: 19.9 … 1999 CNY.
const PRICES: [u32; 20] = [
    1990, 2990, 3990, 4900, 5990, 6900, 7900, 9900, 12900, 15900, 19900, 25900, 29900, 39900,
    49900, 69900, 89900, 129900, 159900, 199900,
];
const PRICE_CDF: [u32; 20] = cumulative([
    16, 20, 18, 16, 16, 14, 14, 18, 12, 10, 10, 6, 6, 4, 4, 2, 2, 2, 1, 1,
]);

/// What is decided about a person before anything happens: a handful of draws at the head of
/// their stream. The first pass over all people reads only these (to order people by their
/// first appearance and to pair family phones); the second pass draws them again, identically,
/// and goes on to the whole life.
pub(crate) struct Profile {
    /// Unix ms of the first event.
    pub(crate) start: i64,
    /// Interest in the brand: log-normal, so a few people are very much more engaged.
    affinity: f64,
    /// First met the brand through an ad rather than a video.
    entry_ad: bool,
    /// When the person follows, if ever (may fall after the window).
    follow_at: Option<i64>,
    /// Lead forms the person will fill in.
    leads: u8,
    /// Gives a phone number when asked (some leave only their Douyin account).
    phone_ok: bool,
    buyer: bool,
    /// Uses a family member's phone instead of their own (when they use a phone at all).
    pub(crate) family: bool,
}

impl Profile {
    pub(crate) fn draw(w: &World, rng: &mut ChaCha8Rng) -> Profile {
        let start = draw_start(w, rng);
        let affinity = (0.9 * rng.normal() - 0.1).exp();
        let entry_ad = rng.chance(0.28);
        let p_follow = affinity / (affinity + 1.1) * if entry_ad { 0.65 } else { 1.0 };
        let follow_at = if rng.chance(p_follow) {
            // Many follow on the spot; the rest come back to it days later.
            Some(if rng.chance(0.45) {
                start + rng.between(5 * SEC, 4 * MIN)
            } else {
                let later = start + rng.exp(6.0 * DAY as f64) as i64;
                moment(rng, later, start)
            })
        } else {
            None
        };
        let phone_ok = rng.chance(0.88);
        let leads = if follow_at.is_some() {
            if rng.chance((0.23 * affinity.powf(0.5)).min(0.75)) {
                // Many leave a second or third form through another channel: the dedup problem.
                [1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3][rng.below(20) as usize]
            } else {
                0
            }
        } else if entry_ad && phone_ok && rng.chance(0.07) {
            1 + rng.chance(0.2) as u8
        } else {
            0
        };
        let buyer = match follow_at {
            Some(_) => {
                rng.chance((0.06 * affinity.powf(0.8) + if leads > 0 { 0.2 } else { 0.0 }).min(0.9))
            }
            None if entry_ad => rng.chance(0.012),
            None => rng.chance(0.003),
        };
        let family = rng.chance(FAMILY);
        Profile {
            start,
            affinity,
            entry_ad,
            follow_at,
            leads,
            phone_ok,
            buyer,
            family,
        }
    }

    /// Will likely show a phone somewhere (a lead form or an order). Family phones are paired
    /// between such people, so that a shared number actually appears under both.
    pub(crate) fn phone_user(&self) -> bool {
        self.phone_ok && (self.leads > 0 || self.buyer)
    }
}

/// First appearance: anywhere in the window, denser towards its end (the brand is growing),
/// at an hour people are on their phones.
fn draw_start(w: &World, rng: &mut ChaCha8Rng) -> i64 {
    const GROWTH: f64 = 0.8;
    let u = rng.unit();
    // Inverse CDF of a density rising linearly by GROWTH over the window.
    let x = ((1.0 + 2.0 * GROWTH * u * (1.0 + GROWTH / 2.0)).sqrt() - 1.0) / GROWTH;
    let span = w.end - w.base;
    let t = w.base + 1 + (x * (span - 1) as f64) as i64;
    for _ in 0..4 {
        let c = local_midnight(local_day(t)) + time_of_day(rng);
        if c > w.base && c <= w.end {
            return c;
        }
    }
    t
}

/// A moment on the local day of `t` at a usual hour, but after `lo`.
fn moment(rng: &mut ChaCha8Rng, t: i64, lo: i64) -> i64 {
    let midnight = local_midnight(local_day(t));
    for _ in 0..3 {
        let x = midnight + time_of_day(rng);
        if x > lo {
            return x;
        }
    }
    lo + rng.between(SEC, 30 * MIN)
}

/// Buffers reused from one person to the next.
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) evs: Vec<Ev>,
    follows: Vec<(i64, i64)>,
    groups: Vec<(u32, i64, i64)>,
}

struct Life<'a> {
    w: &'a World,
    rng: ChaCha8Rng,
    evs: &'a mut Vec<Ev>,
    /// Intervals [from, to) during which the person follows the account.
    follows: &'a mut Vec<(i64, i64)>,
    /// (group, join, leave) with `i64::MAX` for never leaving.
    groups: &'a mut Vec<(u32, i64, i64)>,
    affinity: f64,
    phone_ok: bool,
    /// Added on WeCom at (`i64::MAX`: never).
    wecom_at: i64,
    has_wx_union: bool,
    has_dy_union: bool,
    store: Option<u32>,
    first_phone_lead: Option<i64>,
    /// Writes a family member's phone number rather than an own one.
    borrows_phone: bool,
    /// The phone this person writes is written by another person too.
    shares_phone: bool,
}

/// Draws person `p`'s whole life into `scratch.evs` (unsorted, possibly past the window's end).
pub(crate) fn draw_life(w: &World, p: u32, scratch: &mut Scratch) {
    let mut rng = w.person_rng(p);
    let prof = Profile::draw(w, &mut rng);
    scratch.evs.clear();
    scratch.follows.clear();
    scratch.groups.clear();
    let mut life = Life {
        w,
        rng,
        evs: &mut scratch.evs,
        follows: &mut scratch.follows,
        groups: &mut scratch.groups,
        affinity: prof.affinity,
        phone_ok: prof.phone_ok,
        wecom_at: i64::MAX,
        has_wx_union: false,
        has_dy_union: false,
        store: None,
        first_phone_lead: None,
        borrows_phone: w.family.contains_key(&p),
        shares_phone: w.family.contains_key(&p) || w.family_owners.contains(&p),
    };
    life.run(&prof);
}

impl Life<'_> {
    fn emit(&mut self, t: i64, kind: Kind, mask: u16, a: u32) {
        if t <= self.w.end {
            self.evs.push(Ev { t, kind, mask, a });
        }
    }

    fn moment(&mut self, t: i64, lo: i64) -> i64 {
        moment(&mut self.rng, t, lo)
    }

    fn phone(&mut self) -> u16 {
        id::PHONE | ((self.rng.pick(&PHONE_FMT_CDF) as u16) << id::PHONE_FMT_SHIFT)
    }

    fn email(&mut self) -> u16 {
        id::EMAIL | ((self.rng.pick(&EMAIL_CASE_CDF) as u16) << id::EMAIL_CASE_SHIFT)
    }

    fn following(&self, t: i64) -> bool {
        self.follows.iter().any(|&(a, b)| a <= t && t < b)
    }

    fn run(&mut self, prof: &Profile) {
        let t0 = prof.start;
        let douyin = id::OPEN | Source::Douyin.bits();
        if prof.entry_ad {
            let ad = self.w.ad_at(t0, &mut self.rng);
            let ads = id::OPEN | Source::OceanEngine.bits();
            self.emit(t0, Kind::AdImpression, ads, ad);
            if self.rng.chance(0.12) {
                let t = t0 + self.rng.between(2 * SEC, 40 * SEC);
                self.emit(t, Kind::AdClick, ads, ad);
            }
        } else {
            let v = self.w.video_at(t0, &mut self.rng);
            self.emit(t0, Kind::VideoView, douyin, v);
            if self.rng.chance(0.12) {
                let t = t0 + self.rng.between(3 * SEC, 40 * SEC);
                self.emit(t, Kind::VideoLike, douyin, v);
            }
        }

        // Casual touches: before following, or all there is for those who never follow.
        let (casual_end, touches) = match prof.follow_at {
            Some(f) if f - t0 > 30 * MIN => (f.min(self.w.end), self.rng.geometric(1.2, 20)),
            Some(_) => (t0, 0),
            None => {
                let span = self.rng.exp(12.0 * DAY as f64 * self.affinity.powf(0.5)) as i64;
                let n = self.rng.geometric(0.6 + 1.2 * self.affinity.powf(0.8), 60);
                (t0 + span, n)
            }
        };
        for _ in 0..touches {
            let x = self.rng.between(t0, casual_end);
            let x = self.moment(x, t0);
            self.casual_touch(x, prof.entry_ad);
        }

        let follow_at = prof.follow_at.filter(|&f| f <= self.w.end);
        if let Some(f) = follow_at {
            self.follow_timeline(f);
        }
        self.leads(prof, follow_at);
        self.wecom(follow_at);
        if let Some(f) = follow_at {
            self.subscribe_and_groups(f);
            self.sessions(f);
        }
        if prof.buyer {
            self.orders(prof, follow_at);
        }
    }

    fn casual_touch(&mut self, x: i64, entry_ad: bool) {
        let cdf = if entry_ad {
            cumulative([45, 35, 9, 5])
        } else {
            cumulative([60, 10, 9, 5])
        };
        match self.rng.pick(&cdf) {
            0 => {
                let n = 1 + self.rng.geometric(0.5, 10);
                self.videos(x, n, false);
            }
            1 => {
                let ad = self.w.ad_at(x, &mut self.rng);
                let ads = id::OPEN | Source::OceanEngine.bits();
                self.emit(x, Kind::AdImpression, ads, ad);
                if self.rng.chance(0.08) {
                    let t = x + self.rng.between(2 * SEC, 40 * SEC);
                    self.emit(t, Kind::AdClick, ads, ad);
                }
            }
            2 => self.emit(x, Kind::HomepageVisit, id::OPEN, 0),
            _ => {
                if !self.live(x, None) {
                    self.videos(x, 1, false);
                }
            }
        }
    }

    fn videos(&mut self, t: i64, n: u32, fan: bool) {
        let (like, comment, share) = if fan {
            (0.30, 0.07, 0.05)
        } else {
            (0.10, 0.02, 0.015)
        };
        let mut x = t;
        for _ in 0..n {
            let v = self.w.video_at(x, &mut self.rng);
            self.emit(x, Kind::VideoView, id::OPEN, v);
            if self.rng.chance(like) {
                let y = x + self.rng.between(3 * SEC, 40 * SEC);
                self.emit(y, Kind::VideoLike, id::OPEN, v);
            }
            if self.rng.chance(comment) {
                let y = x + self.rng.between(10 * SEC, 90 * SEC);
                self.emit(y, Kind::VideoComment, id::OPEN, v);
            }
            if self.rng.chance(share) {
                let y = x + self.rng.between(20 * SEC, 120 * SEC);
                self.emit(y, Kind::VideoShare, id::OPEN, v);
            }
            x += self.rng.between(20 * SEC, 4 * MIN);
        }
    }

    /// Watches the live that is on at `t` or the next one within three days; `lead_name` set
    /// means a lead form is filled in during the stream. Returns false when there is no live.
    fn live(&mut self, t: i64, lead_name: Option<u32>) -> bool {
        let Some(i) = self.w.next_live(t) else {
            return false;
        };
        let (start, end) = (self.w.lives[i].start, self.w.lives[i].end);
        if start > t + 3 * DAY {
            return false;
        }
        let enter = if t >= start {
            t
        } else {
            // Most arrive near the start (the reminder), the rest drift in.
            start + (self.rng.unit().powf(1.6) * (end - start - 10 * MIN) as f64) as i64
        };
        let room = (end - enter).max(10 * SEC);
        let median = 6.0 * 60.0 * self.affinity.powf(0.3);
        let mut dur = ((median * (1.1 * self.rng.normal()).exp()) as i64 * SEC).max(20 * SEC);
        if lead_name.is_some() {
            dur = dur.max(5 * MIN);
        }
        let dur = dur.min(room);
        let live = i as u32;
        self.emit(enter, Kind::LiveEnter, id::OPEN, live);
        self.emit(
            enter + dur,
            Kind::LiveWatch,
            id::OPEN,
            pack::watch(live, (dur / SEC) as u32),
        );
        let comments = self
            .rng
            .geometric(dur as f64 / (30 * MIN) as f64 * self.affinity.powf(0.5), 25);
        for _ in 0..comments {
            let x = enter + self.rng.between(SEC, dur);
            self.emit(x, Kind::LiveComment, id::OPEN, live);
        }
        if dur > 3 * MIN && self.rng.chance(0.06) {
            let x = enter + self.rng.between(MIN, dur);
            self.emit(x, Kind::CouponClaim, id::OPEN, 3);
        }
        if let Some(name) = lead_name {
            let x = enter + self.rng.between(MIN, dur - 30 * SEC);
            let mut mask = id::OPEN | id::LEAD;
            if self.phone_ok {
                mask |= self.phone();
                self.note_phone_lead(x);
            }
            self.emit(
                x,
                Kind::LeadForm,
                mask,
                pack::lead(channel::LIVE, name, 0, live),
            );
        }
        true
    }

    fn note_phone_lead(&mut self, t: i64) {
        if t <= self.w.end && self.first_phone_lead.is_none_or(|f| t < f) {
            self.first_phone_lead = Some(t);
        }
    }

    /// A private-message conversation; on WeCom for half of the conversations of people added
    /// there. With `lead_name`, it ends in a lead form.
    fn conversation(&mut self, t: i64, lead_name: Option<u32>) {
        let on_wecom = lead_name.is_none() && t >= self.wecom_at && self.rng.chance(0.5);
        let who = if on_wecom {
            let wx = if self.has_wx_union && self.rng.chance(0.3) {
                id::WX_UNION
            } else {
                0
            };
            id::WECOM | wx | Source::Wecom.bits()
        } else {
            id::OPEN | Source::Douyin.bits()
        };
        let text = if lead_name.is_some() {
            LEAD_TEXTS[self.rng.below(LEAD_TEXTS.len() as u32) as usize]
        } else {
            self.rng.pick(&TEXT_CDF) as u32
        };
        self.emit(t, Kind::PrivateMessageIn, who, text);
        if self.rng.chance(0.9) {
            let x = t + self.rng.between(20 * SEC, 20 * MIN);
            self.emit(x, Kind::PrivateMessageOut, who, 0);
        }
        let mut last = t + 20 * MIN;
        if let Some(name) = lead_name {
            let x = t + self.rng.between(2 * MIN, 25 * MIN);
            // A form sent in the chat: sometimes it creates a lead id, always the open id.
            let mut mask = id::OPEN | Source::Douyin.bits();
            if self.rng.chance(0.5) {
                mask |= id::LEAD;
            }
            if self.phone_ok {
                mask |= self.phone();
                self.note_phone_lead(x);
            }
            self.emit(
                x,
                Kind::LeadForm,
                mask,
                pack::lead(channel::PRIVATE_MESSAGE, name, 0, 0),
            );
            last = x;
        }
        if self.rng.chance(0.35) {
            let x = last + self.rng.between(MIN, 40 * MIN);
            let text = self.rng.pick(&TEXT_CDF) as u32;
            self.emit(x, Kind::PrivateMessageIn, who, text);
            if self.rng.chance(0.85) {
                let y = x + self.rng.between(20 * SEC, 15 * MIN);
                self.emit(y, Kind::PrivateMessageOut, who, 0);
            }
        }
    }

    /// An Ocean Engine ad whose form takes only a phone: the lead has no Douyin open id.
    fn ad_lead(&mut self, t: i64, name: u32) {
        let ad = self.w.ad_at(t, &mut self.rng);
        let ads = id::OPEN | Source::OceanEngine.bits();
        self.emit(t, Kind::AdImpression, ads, ad);
        let click = t + self.rng.between(3 * SEC, 60 * SEC);
        self.emit(click, Kind::AdClick, ads, ad);
        let x = click + self.rng.between(40 * SEC, 5 * MIN);
        let mask = id::LEAD | self.phone() | Source::OceanEngine.bits();
        self.note_phone_lead(x);
        self.emit(
            x,
            Kind::LeadForm,
            mask,
            pack::lead(channel::AD, name, 0, ad),
        );
        // Brands follow ad leads up in Douyin IM, and most people answer: Douyin's lead card
        // (留资卡片) in the conversation carries the phone they confirm from their account.
        // That message is the evidence tying the ad form's phone to a Douyin open id; the few
        // who never answer stay two fans, as they would for any resolver.
        // Families sharing a phone are the dedup-hard case this data exists to test, so their
        // Douyin side always answers, and promptly (before sales add the phone on WeCom): the
        // data then holds the evidence that tells the two people apart, which no resolver
        // could invent.
        if self.rng.chance(0.97) || self.shares_phone {
            let y = if self.shares_phone {
                x + self.rng.between(5 * MIN, 50 * MIN)
            } else {
                x + self.rng.between(10 * MIN, 2 * DAY)
            };
            let text = self.rng.pick(&TEXT_CDF) as u32;
            let mask = id::OPEN | self.phone() | Source::Douyin.bits();
            self.emit(y, Kind::PrivateMessageIn, mask, text);
        }
    }

    fn leads(&mut self, prof: &Profile, follow_at: Option<i64>) {
        let mut used = [false; 3];
        let mut t = follow_at.unwrap_or(prof.start);
        for j in 0..prof.leads {
            let gap = match follow_at {
                Some(_) => self.rng.exp(9.0 * DAY as f64) as i64,
                None if j == 0 && self.rng.chance(0.5) => self.rng.between(MIN, 10 * MIN),
                None => self.rng.exp(if j == 0 { 2.0 } else { 12.0 } * DAY as f64) as i64,
            };
            let lo = t;
            t = if gap < HOUR {
                t + gap
            } else {
                self.moment(t + gap, lo)
            };
            if t > self.w.end {
                break;
            }
            let mut ch = if follow_at.is_some() {
                self.rng.pick(&CHANNEL_CDF) as u32
            } else {
                channel::AD
            };
            if used[ch as usize] && follow_at.is_some() && self.rng.chance(0.7) {
                ch = self.rng.pick(&CHANNEL_CDF) as u32;
            }
            if ch == channel::AD && !self.phone_ok {
                ch = channel::PRIVATE_MESSAGE;
            }
            used[ch as usize] = true;
            let name = self.rng.pick(&NAME_CDF) as u32;
            match ch {
                channel::LIVE => {
                    if !self.live(t, Some(name)) {
                        self.conversation(t, Some(name));
                    }
                }
                channel::AD => self.ad_lead(t, name),
                _ => self.conversation(t, Some(name)),
            }
        }
    }

    /// Sales add many phone leads on WeCom; a few others get there through private messages.
    /// The welcome message is the one event that ties the WeCom contact to the person (by the
    /// phone they were added with, or by their Douyin account).
    fn wecom(&mut self, follow_at: Option<i64>) {
        let at = match (self.first_phone_lead, follow_at) {
            (Some(l), _) if self.rng.chance(0.5) => l + self.rng.between(HOUR, 3 * DAY),
            (None, Some(f)) if self.rng.chance(0.06) => {
                let t = f + self.rng.exp(20.0 * DAY as f64) as i64;
                self.moment(t, f)
            }
            _ => return,
        };
        if at > self.w.end {
            return;
        }
        self.wecom_at = at;
        self.has_wx_union = self.rng.chance(0.6);
        let mut mask = id::WECOM | Source::Wecom.bits();
        // Searching WeChat by a phone finds the phone's owner, so someone who wrote a family
        // member's number is added through their Douyin account instead.
        mask |= if self.first_phone_lead.is_some() && !self.borrows_phone {
            self.phone()
        } else {
            id::OPEN
        };
        if self.has_wx_union {
            mask |= id::WX_UNION;
        }
        self.emit(at, Kind::PrivateMessageOut, mask, 0);
        if self.rng.chance(0.6) {
            let x = at + self.rng.between(MIN, 3 * HOUR);
            let text = self.rng.pick(&TEXT_CDF) as u32;
            self.emit(
                x,
                Kind::PrivateMessageIn,
                id::WECOM | Source::Wecom.bits(),
                text,
            );
        }
    }

    fn follow_timeline(&mut self, f: i64) {
        self.emit(f, Kind::Follow, id::OPEN, 0);
        self.has_dy_union = self.rng.chance(0.45);
        if self.rng.chance(0.06) {
            self.store = Some(self.rng.below(STORES.len() as u32));
        }
        if self.rng.chance(0.13) {
            let u = f + self.rng.exp(45.0 * DAY as f64) as i64 + self.rng.between(HOUR, DAY);
            let u = self.moment(u, f + HOUR);
            self.follows.push((f, u));
            self.emit(u, Kind::Unfollow, id::OPEN, 0);
            if self.rng.chance(0.25) {
                let r = u + self.rng.exp(20.0 * DAY as f64) as i64;
                let r = self.moment(r, u + HOUR);
                self.follows.push((r, i64::MAX));
                self.emit(r, Kind::Follow, id::OPEN, 0);
            }
        } else {
            self.follows.push((f, i64::MAX));
        }
    }

    fn dy_union(&mut self, p: f64) -> u16 {
        if self.has_dy_union && self.rng.chance(p) {
            id::DY_UNION
        } else {
            0
        }
    }

    fn subscribe_and_groups(&mut self, f: i64) {
        if self.rng.chance((0.3 * self.affinity.powf(0.4)).min(0.6)) {
            let t = f + self.rng.exp(6.0 * DAY as f64) as i64;
            let s = self.moment(t, f);
            if self.following(s) {
                let mask = id::OPEN | self.dy_union(0.7);
                self.emit(s, Kind::Subscribe, mask, 0);
                if self.rng.chance(0.2) {
                    let t = s + self.rng.exp(30.0 * DAY as f64) as i64;
                    let u = self.moment(t, s + MIN);
                    self.emit(u, Kind::Unsubscribe, id::OPEN, 0);
                }
            }
        }
        if self.rng.chance((0.22 * self.affinity.powf(0.5)).min(0.6)) {
            let t = f + self.rng.exp(12.0 * DAY as f64) as i64;
            let j = self.moment(t, f);
            self.join_group(j, None);
            if self.rng.chance(0.12) {
                let first = self.groups.first().map(|g| g.0);
                let t = j + self.rng.exp(20.0 * DAY as f64) as i64;
                let j2 = self.moment(t, j + MIN);
                self.join_group(j2, first);
            }
        }
    }

    fn group_mask(&mut self, group: u32) -> u16 {
        if group >= DOUYIN_GROUPS {
            let wx = if self.has_wx_union && self.rng.chance(0.2) {
                id::WX_UNION
            } else {
                0
            };
            id::WECOM | wx | Source::Wecom.bits()
        } else {
            id::OPEN | Source::Douyin.bits()
        }
    }

    fn join_group(&mut self, j: i64, not: Option<u32>) {
        if !self.following(j) || j > self.w.end {
            return;
        }
        let mut group = if j > self.wecom_at && self.rng.chance(0.45) {
            DOUYIN_GROUPS + self.rng.below(3)
        } else {
            self.rng.pick(&DOUYIN_GROUP_CDF) as u32
        };
        if Some(group) == not {
            group = (group + 1) % DOUYIN_GROUPS;
        }
        let mask = self.group_mask(group);
        self.emit(j, Kind::GroupJoin, mask, group);
        let leave = if self.rng.chance(0.25) {
            let t = j + self.rng.exp(35.0 * DAY as f64) as i64;
            let l = self.moment(t, j + MIN);
            let mask = self.group_mask(group);
            self.emit(l, Kind::GroupLeave, mask, group);
            l
        } else {
            i64::MAX
        };
        self.groups.push((group, j, leave));
    }

    /// Sessions at a personal rate while active, then a trickle (or silence): the decay that
    /// later moves fans down the layers.
    fn sessions(&mut self, f: i64) {
        let rate = 0.25 * self.affinity.powf(0.9) * self.w.intensity / DAY as f64;
        let active = (40.0 * DAY as f64 * (0.9 * self.rng.normal()).exp()) as i64;
        let active_end = f + (active as f64 * self.affinity.powf(0.25)) as i64;
        let afterwards = if self.rng.chance(0.45) { 0.0 } else { 0.1 };
        let live_taste = (0.7 * self.rng.normal()).exp();
        let chat_taste = (0.7 * self.rng.normal()).exp();
        let mut t = f;
        loop {
            t += self.rng.exp(1.0 / rate) as i64 + 1;
            if t > self.w.end {
                break;
            }
            let level = if t < active_end { 1.0 } else { afterwards };
            if level == 0.0 {
                break;
            }
            let busy = weekday_weight(local_day(t)) as f64 / MAX_WEEKDAY_WEIGHT as f64;
            if !self.rng.chance(level * busy) {
                continue;
            }
            let x = self.moment(t, f);
            self.session(x, live_taste, chat_taste);
        }
    }

    fn session(&mut self, x: i64, live_taste: f64, chat_taste: f64) {
        if !self.following(x) {
            // Unfollowed: the feed still shows the brand's videos now and then.
            self.videos(x, 1, false);
            return;
        }
        let group = self
            .groups
            .iter()
            .find(|g| g.1 <= x && x < g.2)
            .map(|g| (g.0, g.2));
        let weights = [
            40,
            (22.0 * live_taste) as u32,
            7,
            (6.0 * chat_taste) as u32,
            if group.is_some() { 14 } else { 0 },
            3,
            if self.store.is_some() { 2 } else { 0 },
        ];
        let mut cdf = [0u32; 7];
        let mut acc = 0;
        for (c, w) in cdf.iter_mut().zip(weights) {
            acc += w;
            *c = acc;
        }
        match self.rng.pick(&cdf) {
            0 => {
                let n = 1 + self.rng.geometric(1.2, 15);
                self.videos(x, n, true);
            }
            1 => {
                if !self.live(x, None) {
                    self.videos(x, 1, true);
                }
            }
            2 => {
                let mask = id::OPEN | self.dy_union(0.3);
                self.emit(x, Kind::HomepageVisit, mask, 0);
                if self.rng.chance(0.4) {
                    let y = x + self.rng.between(20 * SEC, 2 * MIN);
                    self.videos(y, 1, true);
                }
            }
            3 => self.conversation(x, None),
            4 => {
                let (g, leave) = group.expect("weight is zero without a group");
                let n = 1 + self.rng.geometric(1.5, 20);
                let mut y = x;
                for _ in 0..n {
                    if y >= leave {
                        break;
                    }
                    let mask = self.group_mask(g);
                    self.emit(y, Kind::GroupMessage, mask, g);
                    y += self.rng.between(10 * SEC, 8 * MIN);
                }
            }
            5 => {
                let mask = id::OPEN | self.dy_union(0.7);
                let c = self.rng.below(3);
                self.emit(x, Kind::CouponClaim, mask, c);
            }
            _ => {
                // Stores are visited in opening hours; check-in by a Douyin group-buy voucher,
                // sometimes by the member phone number as well.
                let store = self.store.expect("weight is zero without a store");
                let open = local_midnight(local_day(x)) + self.rng.between(10 * HOUR, 21 * HOUR);
                let t = open.max(x);
                let mut mask = id::OPEN;
                if self.phone_ok && self.rng.chance(0.3) {
                    mask |= self.phone();
                }
                self.emit(t, Kind::StoreVisit, mask, store);
            }
        }
    }

    /// Orders in the Douyin shop. The first carries the open id with the shop account (it was
    /// placed from Douyin), which is what links the shop identity to the fan.
    fn orders(&mut self, prof: &Profile, follow_at: Option<i64>) {
        let has_email = self.rng.chance(0.2);
        let repeat = (0.35 + 0.2 * self.affinity).min(2.5);
        let n = 1 + self.rng.geometric(repeat, 150);
        let first_lead_phone = self.first_phone_lead.is_some();
        let mut t = match (self.first_phone_lead, follow_at) {
            (Some(l), _) => l + self.rng.exp(4.0 * DAY as f64) as i64,
            (None, Some(f)) => f + self.rng.exp(15.0 * DAY as f64) as i64,
            (None, None) => prof.start + self.rng.exp(2.0 * DAY as f64) as i64,
        };
        let mut prev = t;
        for k in 0..n {
            if k > 0 {
                t += self.rng.exp(28.0 * DAY as f64 / self.affinity.powf(0.3)) as i64;
            }
            let x = self.moment(t, prev + MIN);
            if x > self.w.end {
                break;
            }
            prev = x;
            let price = PRICES[self.rng.pick(&PRICE_CDF)];
            let qty = if price <= 49900 && self.rng.chance(0.15) {
                2
            } else {
                1
            };
            let mut fen = price * qty;
            if price >= 9900 && self.rng.chance(0.35) {
                // Claimed a coupon shortly before buying and used it.
                let c = x - self.rng.between(10 * MIN, 36 * HOUR);
                if c > prof.start {
                    let coupon = if price >= 19900 { 2 } else { 1 };
                    self.emit(c, Kind::CouponClaim, id::OPEN, coupon);
                    fen -= if coupon == 2 { 3000 } else { 1000 };
                }
            }
            let mut mask = id::USER | Source::Shop.bits();
            if k == 0 || self.rng.chance(0.7) {
                mask |= id::OPEN;
            }
            if self.phone_ok && ((k == 0 && !first_lead_phone) || self.rng.chance(0.3)) {
                mask |= self.phone();
            }
            if has_email && self.rng.chance(0.5) {
                mask |= self.email();
            }
            if self.has_wx_union && self.rng.chance(0.15) {
                mask |= id::WX_UNION;
            }
            self.emit(x, Kind::Order, mask, pack::money(k, fen));
            if self.rng.chance(0.08) {
                let r = x + self.rng.between(2 * HOUR, 12 * DAY);
                let back = if self.rng.chance(0.75) {
                    fen
                } else if qty == 2 {
                    fen / 2
                } else {
                    // Partial refund (a missing item, a price protection), to the jiao.
                    ((fen as f64 * (0.1 + 0.5 * self.rng.unit())) as u32 / 10 * 10).max(100)
                };
                let mut mask = id::USER | Source::Shop.bits();
                if self.rng.chance(0.4) {
                    mask |= id::OPEN;
                }
                self.emit(r, Kind::Refund, mask, pack::money(k, back.min(fen)));
            }
        }
    }
}

/// Coupons are indexes into `COUPONS`; keep the two in step.
const _: () = assert!(COUPONS.len() == 4);
