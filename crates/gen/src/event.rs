//! The compact in-memory form of one generated event.
//!
//! Benchmarks generate ~30 million events and must hold a good share of them at once to emit
//! them in timestamp order, so an event is 16 bytes: who, when, what, which identities it
//! carries, and one packed word of type-specific detail. Everything else (id strings, phone
//! digits, names) is derived again when the line is written.

/// The catalogue types of docs/events.md that the generator emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(crate) enum Kind {
    VideoView,
    VideoLike,
    VideoComment,
    VideoShare,
    HomepageVisit,
    LiveEnter,
    LiveWatch,
    LiveComment,
    Follow,
    Unfollow,
    AdImpression,
    AdClick,
    LeadForm,
    PrivateMessageIn,
    PrivateMessageOut,
    Subscribe,
    Unsubscribe,
    GroupJoin,
    GroupLeave,
    GroupMessage,
    CouponClaim,
    Order,
    Refund,
    StoreVisit,
}

impl Kind {
    pub(crate) const ALL: [Kind; 24] = [
        Kind::VideoView,
        Kind::VideoLike,
        Kind::VideoComment,
        Kind::VideoShare,
        Kind::HomepageVisit,
        Kind::LiveEnter,
        Kind::LiveWatch,
        Kind::LiveComment,
        Kind::Follow,
        Kind::Unfollow,
        Kind::AdImpression,
        Kind::AdClick,
        Kind::LeadForm,
        Kind::PrivateMessageIn,
        Kind::PrivateMessageOut,
        Kind::Subscribe,
        Kind::Unsubscribe,
        Kind::GroupJoin,
        Kind::GroupLeave,
        Kind::GroupMessage,
        Kind::CouponClaim,
        Kind::Order,
        Kind::Refund,
        Kind::StoreVisit,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::VideoView => "video_view",
            Kind::VideoLike => "video_like",
            Kind::VideoComment => "video_comment",
            Kind::VideoShare => "video_share",
            Kind::HomepageVisit => "homepage_visit",
            Kind::LiveEnter => "live_enter",
            Kind::LiveWatch => "live_watch",
            Kind::LiveComment => "live_comment",
            Kind::Follow => "follow",
            Kind::Unfollow => "unfollow",
            Kind::AdImpression => "ad_impression",
            Kind::AdClick => "ad_click",
            Kind::LeadForm => "lead_form",
            Kind::PrivateMessageIn => "private_message_in",
            Kind::PrivateMessageOut => "private_message_out",
            Kind::Subscribe => "subscribe",
            Kind::Unsubscribe => "unsubscribe",
            Kind::GroupJoin => "group_join",
            Kind::GroupLeave => "group_leave",
            Kind::GroupMessage => "group_message",
            Kind::CouponClaim => "coupon_claim",
            Kind::Order => "order",
            Kind::Refund => "refund",
            Kind::StoreVisit => "store_visit",
        }
    }
}

/// Identity bits of `Ev::mask` / `Rec::mask`, in the order identities are written.
pub(crate) mod id {
    pub(crate) const OPEN: u16 = 1 << 0;
    pub(crate) const DY_UNION: u16 = 1 << 1;
    pub(crate) const WECOM: u16 = 1 << 2;
    pub(crate) const WX_UNION: u16 = 1 << 3;
    pub(crate) const PHONE: u16 = 1 << 4;
    pub(crate) const EMAIL: u16 = 1 << 5;
    pub(crate) const LEAD: u16 = 1 << 6;
    pub(crate) const USER: u16 = 1 << 7;
    pub(crate) const ALL: u16 = 0xff;

    /// Which of seven ways the phone is written (bits 8–10).
    pub(crate) const PHONE_FMT_SHIFT: u32 = 8;
    /// Letter case of the email (bits 11–12).
    pub(crate) const EMAIL_CASE_SHIFT: u32 = 11;
    /// `Source` (bits 13–14).
    pub(crate) const SOURCE_SHIFT: u32 = 13;

    /// Identity kind names, indexed by bit.
    pub(crate) const NAMES: [&str; 8] = [
        "douyin_open_id",
        "douyin_union_id",
        "wecom_external_id",
        "wechat_union_id",
        "phone",
        "email",
        "lead_id",
        "user_id",
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Source {
    Douyin = 0,
    OceanEngine = 1,
    Wecom = 2,
    Shop = 3,
}

impl Source {
    pub(crate) fn from_mask(mask: u16) -> Source {
        match (mask >> id::SOURCE_SHIFT) & 3 {
            0 => Source::Douyin,
            1 => Source::OceanEngine,
            2 => Source::Wecom,
            _ => Source::Shop,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Source::Douyin => "douyin",
            Source::OceanEngine => "oceanengine",
            Source::Wecom => "wecom",
            Source::Shop => "shop",
        }
    }

    pub(crate) fn bits(self) -> u16 {
        (self as u16) << id::SOURCE_SHIFT
    }
}

/// Lead form channels, in `LeadForm`'s packed word.
pub(crate) mod channel {
    pub(crate) const LIVE: u32 = 0;
    pub(crate) const AD: u32 = 1;
    pub(crate) const PRIVATE_MESSAGE: u32 = 2;
    pub(crate) const NAMES: [&str; 3] = ["live", "ad", "private_message"];
}

/// Packing of the `a` word, per kind:
/// - video events: video index; live enter/comment: live index; ads: ad index;
///   group events: group index; private_message_in: text index; coupon: coupon index;
///   store_visit: store index.
/// - live_watch: live index (low 16 bits) | duration_s << 16.
/// - lead_form: channel (2 bits) | name habit << 2 (2 bits) | lead ordinal << 4 (6 bits) |
///   live or ad index << 10.
/// - order and refund: order ordinal (8 bits) | amount in fen << 8.
pub(crate) mod pack {
    pub(crate) fn watch(live: u32, duration_s: u32) -> u32 {
        (live & 0xffff) | (duration_s.min(0xffff) << 16)
    }
    pub(crate) fn lead(channel: u32, name: u32, ordinal: u32, reference: u32) -> u32 {
        (channel & 3) | ((name & 3) << 2) | ((ordinal & 63) << 4) | (reference << 10)
    }
    pub(crate) fn lead_with_ordinal(a: u32, ordinal: u32) -> u32 {
        (a & !(63 << 4)) | ((ordinal & 63) << 4)
    }
    pub(crate) fn money(ordinal: u32, fen: u32) -> u32 {
        (ordinal & 0xff) | (fen << 8)
    }
}

/// An event while one person's life is being drawn: absolute time in Unix milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ev {
    pub(crate) t: i64,
    pub(crate) kind: Kind,
    pub(crate) mask: u16,
    pub(crate) a: u32,
}

/// An event waiting to be written: 16 bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rec {
    /// Whole seconds after the window's start.
    sec: u32,
    /// Milliseconds within the second (high 11 bits) and `Kind` (low 5 bits).
    ms_kind: u16,
    pub(crate) mask: u16,
    pub(crate) person: u32,
    pub(crate) a: u32,
}

impl Rec {
    pub(crate) fn new(rel_ms: u64, ev: &Ev, person: u32) -> Rec {
        Rec {
            sec: (rel_ms / 1000) as u32,
            ms_kind: (((rel_ms % 1000) as u16) << 5) | ev.kind as u16,
            mask: ev.mask,
            person,
            a: ev.a,
        }
    }

    /// Milliseconds after the window's start.
    pub(crate) fn rel_ms(&self) -> u64 {
        self.sec as u64 * 1000 + (self.ms_kind >> 5) as u64
    }

    pub(crate) fn kind(&self) -> Kind {
        Kind::ALL[(self.ms_kind & 31) as usize]
    }
}

const _: () = assert!(std::mem::size_of::<Rec>() == 16);
