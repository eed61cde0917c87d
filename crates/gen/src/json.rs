//! Writes records as native-event JSON lines, and the truth CSV.
//!
//! Hand-written rather than through `serde_json`: every string the generator emits is either
//! ASCII without quotes or backslashes, or one of a few fixed Chinese literals, so there is
//! nothing to escape, and formatting straight into one reused buffer is what makes tens of
//! millions of lines cheap.

use std::io::{self, Write};

use crate::event::{Kind, Rec, Source, channel, id};
use crate::ids::{push_padded, push_u64};
use crate::world::{COUPONS, DAY, GROUPS, STORES, TEXTS, World, civil_from_days};

/// Buffer size at which lines are handed to the underlying writer.
const FLUSH_AT: usize = 1 << 20;

pub(crate) struct Lines<'a> {
    out: &'a mut dyn Write,
    buf: Vec<u8>,
    /// `{"id":"g<seed>-`
    id_prefix: Vec<u8>,
    written: u64,
    /// UTC day number of `date`, and `YYYY-MM-DDT` for it.
    day: i64,
    date: [u8; 11],
}

impl<'a> Lines<'a> {
    pub(crate) fn new(out: &'a mut dyn Write, seed: u64) -> Lines<'a> {
        let mut id_prefix = b"{\"id\":\"g".to_vec();
        push_u64(&mut id_prefix, seed);
        id_prefix.push(b'-');
        Lines {
            out,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            id_prefix,
            written: 0,
            day: i64::MIN,
            date: [0; 11],
        }
    }

    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    pub(crate) fn event(&mut self, w: &World, r: &Rec) -> io::Result<()> {
        self.written += 1;
        let kind = r.kind();
        let t = w.base + r.rel_ms() as i64;
        self.buf.extend_from_slice(&self.id_prefix);
        push_u64(&mut self.buf, self.written);
        self.buf.extend_from_slice(b"\",\"type\":\"");
        self.buf.extend_from_slice(kind.name().as_bytes());
        self.buf.extend_from_slice(b"\",\"ts\":\"");
        self.timestamp(t);
        self.buf.extend_from_slice(b"\",\"identities\":{");
        identities(&mut self.buf, w, r);
        self.buf.extend_from_slice(b"},\"props\":{");
        props(&mut self.buf, w, r, kind);
        self.buf.extend_from_slice(b"},\"source\":\"");
        self.buf
            .extend_from_slice(Source::from_mask(r.mask).name().as_bytes());
        self.buf.extend_from_slice(b"\"}\n");
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }

    /// RFC 3339 in UTC with milliseconds: `2026-10-01T12:34:56.789Z`.
    fn timestamp(&mut self, t: i64) {
        let day = t.div_euclid(DAY);
        if day != self.day {
            let (y, m, d) = civil_from_days(day);
            let mut s = Vec::with_capacity(11);
            push_padded(&mut s, y as u64, 4);
            s.push(b'-');
            push_padded(&mut s, m as u64, 2);
            s.push(b'-');
            push_padded(&mut s, d as u64, 2);
            s.push(b'T');
            self.date.copy_from_slice(&s);
            self.day = day;
        }
        self.buf.extend_from_slice(&self.date);
        let ms = t.rem_euclid(DAY);
        let two = |b: &mut Vec<u8>, n: i64| {
            b.push(b'0' + (n / 10) as u8);
            b.push(b'0' + (n % 10) as u8);
        };
        two(&mut self.buf, ms / 3_600_000);
        self.buf.push(b':');
        two(&mut self.buf, ms / 60_000 % 60);
        self.buf.push(b':');
        two(&mut self.buf, ms / 1000 % 60);
        self.buf.push(b'.');
        let frac = ms % 1000;
        self.buf.push(b'0' + (frac / 100) as u8);
        two(&mut self.buf, frac % 100);
        self.buf.push(b'Z');
    }
}

/// The phone owner whose number person `p` writes (themselves, or a family member).
pub(crate) fn phone_key(w: &World, p: u32) -> u32 {
    w.family.get(&p).copied().unwrap_or(p)
}

fn identities(b: &mut Vec<u8>, w: &World, r: &Rec) {
    let k = &w.keys;
    let p = r.person;
    let mut first = true;
    for bit in 0..8 {
        if r.mask & (1 << bit) == 0 {
            continue;
        }
        if !first {
            b.push(b',');
        }
        first = false;
        b.push(b'"');
        b.extend_from_slice(id::NAMES[bit].as_bytes());
        b.extend_from_slice(b"\":\"");
        match 1u16 << bit {
            id::OPEN => k.open_id(b, p),
            id::DY_UNION => k.douyin_union_id(b, p),
            id::WECOM => k.wecom_external_id(b, p),
            id::WX_UNION => k.wechat_union_id(b, p),
            id::PHONE => k.phone(
                b,
                phone_key(w, p),
                ((r.mask >> id::PHONE_FMT_SHIFT) & 7) as u8,
            ),
            id::EMAIL => k.email(b, p, ((r.mask >> id::EMAIL_CASE_SHIFT) & 3) as u8),
            id::LEAD => k.lead_id(b, p, (r.a >> 4) & 63),
            _ => k.user_id(b, p),
        }
        b.push(b'"');
    }
}

fn string_prop(b: &mut Vec<u8>, name: &str, value: &str) {
    b.push(b'"');
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b"\":\"");
    b.extend_from_slice(value.as_bytes());
    b.push(b'"');
}

/// An amount in fen as a JSON number with at most two decimals (`19.9`, `199`, `12.34`).
fn amount(b: &mut Vec<u8>, fen: u32) {
    push_u64(b, (fen / 100) as u64);
    let frac = fen % 100;
    if frac != 0 {
        b.push(b'.');
        b.push(b'0' + (frac / 10) as u8);
        if !frac.is_multiple_of(10) {
            b.push(b'0' + (frac % 10) as u8);
        }
    }
}

fn props(b: &mut Vec<u8>, w: &World, r: &Rec, kind: Kind) {
    let a = r.a;
    match kind {
        Kind::VideoView | Kind::VideoLike | Kind::VideoComment | Kind::VideoShare => {
            string_prop(b, "video_id", &w.video_ids[a as usize]);
        }
        Kind::LiveEnter | Kind::LiveComment => string_prop(b, "live_id", &w.live_ids[a as usize]),
        Kind::LiveWatch => {
            string_prop(b, "live_id", &w.live_ids[(a & 0xffff) as usize]);
            b.extend_from_slice(b",\"duration_s\":");
            push_u64(b, (a >> 16) as u64);
        }
        Kind::AdImpression | Kind::AdClick => string_prop(b, "ad_id", &w.ad_ids[a as usize]),
        Kind::LeadForm => {
            b.extend_from_slice(b"\"name\":\"");
            w.keys.lead_name(b, r.person, ((a >> 2) & 3) as u8);
            b.extend_from_slice(b"\",");
            let ch = a & 3;
            string_prop(b, "channel", channel::NAMES[ch as usize]);
            match ch {
                channel::LIVE => {
                    b.push(b',');
                    string_prop(b, "live_id", &w.live_ids[(a >> 10) as usize]);
                }
                channel::AD => {
                    b.push(b',');
                    string_prop(b, "ad_id", &w.ad_ids[(a >> 10) as usize]);
                }
                _ => {}
            }
        }
        Kind::PrivateMessageIn => string_prop(b, "text", TEXTS[a as usize]),
        Kind::GroupJoin | Kind::GroupLeave | Kind::GroupMessage => {
            string_prop(b, "group_id", GROUPS[a as usize]);
        }
        Kind::CouponClaim => string_prop(b, "coupon_id", COUPONS[a as usize]),
        Kind::StoreVisit => string_prop(b, "store_id", STORES[a as usize]),
        Kind::Order | Kind::Refund => {
            b.extend_from_slice(b"\"order_id\":\"");
            w.keys.order_id(b, r.person, a & 0xff);
            b.extend_from_slice(b"\",\"amount\":");
            amount(b, a >> 8);
        }
        Kind::HomepageVisit
        | Kind::Follow
        | Kind::Unfollow
        | Kind::PrivateMessageOut
        | Kind::Subscribe
        | Kind::Unsubscribe => {}
    }
}

/// One truth row per identity value the person's events carry, values normalized as ingest
/// stores them. `seen` is the union of identity bits over the person's events.
pub(crate) fn truth_rows(b: &mut Vec<u8>, w: &World, p: u32, seen: u8, leads: u8) {
    let k = &w.keys;
    let row_end = |b: &mut Vec<u8>| {
        b.extend_from_slice(b",p");
        push_padded(b, p as u64, 6);
        b.push(b'\n');
    };
    for bit in 0..8 {
        let m = 1u16 << bit;
        if seen as u16 & m == 0 {
            continue;
        }
        let rows = if m == id::LEAD { leads as u32 } else { 1 };
        for ordinal in 0..rows {
            b.extend_from_slice(id::NAMES[bit].as_bytes());
            b.push(b',');
            match m {
                id::OPEN => k.open_id(b, p),
                id::DY_UNION => k.douyin_union_id(b, p),
                id::WECOM => k.wecom_external_id(b, p),
                id::WX_UNION => k.wechat_union_id(b, p),
                id::PHONE => k.phone_normalized(b, phone_key(w, p)),
                id::EMAIL => k.email(b, p, 0),
                id::LEAD => k.lead_id(b, p, ordinal),
                _ => k.user_id(b, p),
            }
            row_end(b);
        }
    }
}
