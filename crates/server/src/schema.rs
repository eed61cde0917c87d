//! The JSON the API reads and writes, described for the OpenAPI document (`GET /openapi.json`).
//!
//! These types are descriptions, not what handlers serialize: the answers come from the app's
//! and the engine's own types (and a few `json!` objects), which stay free of HTTP concerns.
//! Each type here names the one it describes. What keeps them honest is CI: Schemathesis calls
//! every operation of the running server and checks every answer against these schemas
//! (`tests/schemathesis/run.sh`). Objects are closed (`additionalProperties: false`), so a field
//! added to an answer without being described here fails that run.
//!
//! Every time in an answer is RFC 3339 in UTC with milliseconds ([`Time`]).

// Nothing constructs these types; they exist for their `ToSchema` derives.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::ToSchema;

/// An instant, RFC 3339 in UTC with milliseconds.
#[derive(ToSchema)]
#[schema(format = DateTime, example = "2026-11-20T12:31:07.000Z")]
pub struct Time(String);

/// An instant as a request gives it: RFC 3339 with an offset (`2026-11-20T20:31:07+08:00`).
#[derive(ToSchema)]
#[schema(format = DateTime, example = "2026-11-20T20:31:07+08:00")]
pub struct TimeIn(String);

// ---------------------------------------------------------------------------------------------
// Errors (crate::error)

/// What was wrong.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// A stable machine code (`invalid_json`, `unauthorized`, `fan_not_found`, …): the table of
    /// codes is in docs/ingest.md and each area's page.
    #[schema(example = "invalid_number")]
    code: String,
    /// For people; may change between versions.
    message: String,
    /// The field, query parameter, path parameter or header at fault, when there is one.
    #[schema(required, example = "limit")]
    field: Option<String>,
    /// The 1-based line of a refused file, only on a refused journey or spend file
    /// (`POST /api/journeys`, `POST /api/spend`).
    #[schema(minimum = 1, example = 7)]
    line: Option<u64>,
}

/// The error body of every native route (`/api/*`, `/webhooks/*`, `/healthz`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Error {
    error: ErrorDetail,
}

/// The error body of the Segment-compatible routes (`/v1/*`): the native body plus `code` and
/// `message` at the top level, copied from `error` (RudderStack's SDK reads them there).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentErrorBody {
    code: String,
    message: String,
    error: ErrorDetail,
}

// ---------------------------------------------------------------------------------------------
// Ingest (crate::ingest; siyu_app::BatchOutcome)

/// One refused event of a batch (`siyu_app::Rejection`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    /// Position in the batch, from 0.
    index: u64,
    /// The event's id (`messageId` on `/v1/*`), when it had a readable one.
    #[schema(required)]
    id: Option<String>,
    #[schema(example = "invalid_phone")]
    code: String,
    message: String,
    /// The event's field at fault (`identities.phone`, `traits.phone`).
    #[schema(required)]
    field: Option<String>,
}

/// What happened to each event of a batch.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchOutcome {
    /// Stored now.
    accepted: u64,
    /// Already stored (same `id`): not stored again.
    duplicates: u64,
    rejected: Vec<Rejection>,
}

/// A batch whose every event was refused (400): the batch answer plus `error`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectedBatch {
    accepted: u64,
    duplicates: u64,
    rejected: Vec<Rejection>,
    /// `all_events_rejected`.
    error: ErrorDetail,
}

/// The answer of `/v1/*`: the native one plus `"success": true` (what Segment answers).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentOutcome {
    accepted: u64,
    duplicates: u64,
    rejected: Vec<Rejection>,
    success: bool,
}

/// A Segment batch whose every message was refused (400): the batch answer, `error`, and its
/// `code` and `message` at the top level.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentRejectedBatch {
    accepted: u64,
    duplicates: u64,
    rejected: Vec<Rejection>,
    error: ErrorDetail,
    code: String,
    message: String,
}

/// A 400 of `POST /api/events`: the request could not be read, or every event was refused.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum IngestRefused {
    #[schema(title = "RejectedBatch")]
    Batch(RejectedBatch),
    #[schema(title = "Error")]
    Error(Error),
}

/// A 400 of `/v1/*`: the request could not be read, or every message was refused.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum SegmentRefused {
    #[schema(title = "SegmentRejectedBatch")]
    Batch(SegmentRejectedBatch),
    #[schema(title = "SegmentErrorBody")]
    Error(SegmentErrorBody),
}

/// The identity values of a native event: at least one, of these nine kinds. Integers are
/// taken as their digits; `null` counts as absent.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct Identities {
    douyin_open_id: Option<String>,
    douyin_union_id: Option<String>,
    wecom_external_id: Option<String>,
    wechat_union_id: Option<String>,
    #[schema(example = "138 0013 8000")]
    phone: Option<String>,
    email: Option<String>,
    lead_id: Option<String>,
    user_id: Option<String>,
    anonymous_id: Option<String>,
}

/// One native event (docs/events.md).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The idempotency key within the tenant: 1–128 characters.
    #[schema(min_length = 1, max_length = 128, example = "live-20261120-8841")]
    id: String,
    /// A catalogue type (`follow`, `order`, …) or `x_` + a custom name.
    #[schema(example = "lead_form")]
    r#type: String,
    /// Event time, with an offset; at most 24 h in the future.
    ts: TimeIn,
    identities: Identities,
    /// Required for `x_` types; for catalogue types it must match the type's domain.
    domain: Option<Domain>,
    /// The type's properties (some types check theirs: `order` needs `order_id` and `amount`).
    props: Option<BTreeMap<String, Value>>,
    /// Where the event came from: 1–64 characters.
    #[schema(min_length = 1, max_length = 64, example = "douyin")]
    source: Option<String>,
}

/// `{"events": [...]}`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventList {
    #[schema(min_items = 1, max_items = 10000)]
    events: Vec<Event>,
}

/// The body of `POST /api/events`: an array of events, `{"events": [...]}`, or one event.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum EventBatch {
    #[schema(title = "array of events")]
    Array(Vec<Event>),
    #[schema(title = "{\"events\": [...]}")]
    Wrapped(EventList),
    #[schema(title = "one event")]
    One(Box<Event>),
}

/// A Segment message (Segment's tracking API spec); the fields Siyu reads are listed, others
/// are accepted and ignored. At most 32 KB.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// In `/v1/batch`, each message's kind; the other routes imply it.
    r#type: Option<MessageKind>,
    /// The event id.
    message_id: Option<String>,
    user_id: Option<Value>,
    anonymous_id: Option<Value>,
    /// A track's event name: a catalogue type, `Order Completed`, or anything else (then a
    /// custom event `x_<slug>`).
    event: Option<String>,
    properties: Option<BTreeMap<String, Value>>,
    /// Identity traits (`phone`, `email`, any identity kind) become identities.
    traits: Option<BTreeMap<String, Value>>,
    context: Option<BTreeMap<String, Value>>,
    timestamp: Option<String>,
    original_timestamp: Option<String>,
    sent_at: Option<String>,
    /// An alias's previous id.
    previous_id: Option<Value>,
    group_id: Option<Value>,
    name: Option<String>,
    category: Option<String>,
    /// The write key, for clients that send it in the body.
    write_key: Option<String>,
}

/// The message kinds of `/v1/batch`.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

/// The body of `POST /v1/batch`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SegmentBatch {
    #[schema(min_items = 1)]
    batch: Vec<Message>,
    /// The fallback time of messages without one.
    sent_at: Option<String>,
    context: Option<BTreeMap<String, Value>>,
    write_key: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Tenant, stats, health (crate::api)

/// `siyu_domain::Domain`.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    /// 公域: short videos, live streams, the homepage.
    Public,
    /// 商域: ads and lead forms.
    Commercial,
    /// 私域: private messages, fan groups, subscriptions, orders.
    Private,
}

/// Events per domain.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ByDomain {
    public: Option<u64>,
    commercial: Option<u64>,
    private: Option<u64>,
}

/// `GET /api/stats` (`siyu_engine::Stats`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    tenant: String,
    events: u64,
    fans: u64,
    /// Events per type.
    by_type: BTreeMap<String, u64>,
    by_domain: ByDomain,
}

/// A tenant's settings.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    tenant: String,
    /// The domain of custom events made from Segment messages and Douyin deliveries.
    custom_domain: Domain,
}

/// `PATCH /api/tenant`: the settings to change.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantChange {
    custom_domain: Option<Domain>,
}

/// `POST /api/tenant/keys/rotate`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRotation {
    /// Which key to replace.
    key: KeyRole,
    /// How long the old key still works, in seconds: 0 (the default) stops it at once; at
    /// most 604800 (7 days).
    #[schema(minimum = 0, maximum = 604800)]
    grace_seconds: Option<u64>,
}

/// An API key's role.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// May only ingest.
    Write,
    /// May use the whole API.
    Admin,
}

/// The new key (`siyu_app::RotatedKey::to_json`): `write_key` or `admin_key`, shown this once.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotatedKey {
    tenant: String,
    #[schema(example = "sy_w_…")]
    write_key: Option<String>,
    #[schema(example = "sy_a_…")]
    admin_key: Option<String>,
    /// When the old key stops working, if it was given a grace.
    previous_key_expires_at: Option<Time>,
}

/// `POST /api/tenants`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// 1–64 letters, digits, '-' or '_'.
    #[schema(example = "acme")]
    name: String,
}

/// A new tenant's keys, shown this once.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantKeys {
    #[schema(example = "acme")]
    tenant: String,
    write_key: String,
    admin_key: String,
}

/// `GET /healthz`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    #[schema(example = "ok")]
    status: String,
    /// The store's backend.
    #[schema(example = "sqlite")]
    store: String,
    /// How many tenants this process serves: all of them on one SQLite process; on a shared
    /// PostgreSQL, those this node holds the lease of (the others are forwarded).
    #[schema(example = 1)]
    serving: u64,
    /// Whether several nodes share the store (PostgreSQL), each serving its leased tenants.
    shared: bool,
}

// ---------------------------------------------------------------------------------------------
// Fans and identity (crate::identity; siyu_app::identity::FanView, siyu_engine)

/// `siyu_domain::Layer`: 潜在粉丝, 路人粉丝, 好感粉丝, 真爱粉丝.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Potential,
    Passerby,
    Favorable,
    TrueLove,
}

/// `siyu_domain::IdentityKind`.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    DouyinOpenId,
    DouyinUnionId,
    WecomExternalId,
    WechatUnionId,
    Phone,
    Email,
    LeadId,
    UserId,
    AnonymousId,
}

/// One identity value of a fan.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityValue {
    kind: IdentityKind,
    value: String,
}

/// Why two fans were merged (`siyu_engine::MergeCause`).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MergeCause {
    Event,
    Operator,
    Alias,
}

/// One merge (`siyu_app::identity::MergeView`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Merge {
    /// The fan that survived.
    into: i64,
    /// The fan that was absorbed; its id keeps resolving to `into`.
    from: i64,
    /// The linking event's sequence number.
    seq: i64,
    ts: Time,
    cause: MergeCause,
    /// `[kind, value]`: the identity value that linked them (none for an operator merge).
    #[schema(required, min_items = 2, max_items = 2)]
    via: Option<Vec<String>>,
    /// The linking event's id.
    #[schema(required)]
    event_id: Option<String>,
}

/// Two fans that share a value but hold different one-per-person ids
/// (`siyu_engine::PossibleDuplicate`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PossibleDuplicate {
    a: i64,
    b: i64,
    /// The event that found it.
    seq: i64,
    ts: Time,
    /// `[kind, value]`.
    #[schema(min_items = 2, max_items = 2)]
    via: Vec<String>,
}

/// A feature the layer rules read (`siyu_engine::explain::Feature`).
#[derive(ToSchema)]
pub enum Feature {
    #[serde(rename = "follows")]
    Follows,
    #[serde(rename = "subscribed")]
    Subscribed,
    #[serde(rename = "in_group")]
    InGroup,
    #[serde(rename = "engagement_30d")]
    Engagement,
    #[serde(rename = "orders_180d")]
    Orders,
}

/// A feature's value or a threshold: `true`/`false` or a count.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum FeatureValue {
    Flag(bool),
    Count(u32),
}

/// `eq` for yes/no features, `ge` (at least) for counts.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ge,
}

/// One comparison a layer rule made (`siyu_engine::explain::Clause`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Clause {
    feature: Feature,
    value: FeatureValue,
    op: Op,
    threshold: FeatureValue,
    held: bool,
}

/// One layer's rule as the fan's features met it (`siyu_engine::explain::Check`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    layer: Layer,
    held: bool,
    /// Alternatives (any one suffices), each a list of clauses (all must hold).
    any_of: Vec<Vec<Clause>>,
}

/// What the rules look at (`siyu_engine::Features`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Features {
    follows: bool,
    subscribed: bool,
    in_group: bool,
    engagement_30d: u32,
    orders_180d: u32,
}

/// One part of the engagement score.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EngagementPart {
    r#type: String,
    count: u32,
    points: u32,
}

/// One event of a fan's timeline.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimelineEntry {
    ts: Time,
    r#type: String,
    domain: Domain,
}

/// A fan's layer and why (`siyu_engine::Explanation`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Explanation {
    layer: Layer,
    /// 潜在粉丝 / 路人粉丝 / 好感粉丝 / 真爱粉丝.
    label: String,
    as_of: Time,
    /// `checks` in words.
    why: String,
    /// The layer rules in order as `features` met them, down to the one that held.
    checks: Vec<Check>,
    features: Features,
    /// What the engagement score is made of, biggest first.
    engagement: Vec<EngagementPart>,
    /// The latest events across the three domains, newest first.
    timeline: Vec<TimelineEntry>,
}

/// A fan (`siyu_app::identity::FanView`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Fan {
    /// The fan's current id.
    fan: i64,
    /// The id asked for, when it was merged away into `fan`.
    #[schema(required)]
    merged_from: Option<i64>,
    /// Events of this fan, across the fans merged into it.
    events: u64,
    #[schema(required)]
    layer: Option<Explanation>,
    identities: Vec<IdentityValue>,
    merges: Vec<Merge>,
    possible_duplicates: Vec<PossibleDuplicate>,
}

/// `GET /api/fans/lookup`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FanList {
    fans: Vec<Fan>,
}

/// `GET /api/identity/duplicates`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Duplicates {
    possible_duplicates: Vec<PossibleDuplicate>,
}

/// Two fans.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    a: i64,
    b: i64,
}

/// An operator's decision, as recorded.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Confirm,
    Distinct,
}

/// `POST /api/identity/confirm` and `/distinct`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionAnswer {
    decision: DecisionKind,
    a: i64,
    b: i64,
}

/// `POST /api/fans/{id}/unmerge`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Unmerged {
    /// The fan split off again.
    undone: i64,
    #[schema(required)]
    fan: Option<Fan>,
}

/// One channel's line of the dedup report (`siyu_engine::dedup::DedupRow`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupRow {
    channel: String,
    /// Lead forms received.
    leads: u64,
    /// Distinct fans among them.
    people: u64,
    /// `leads - people`.
    repeat_leads: u64,
    /// 线索重复率: `repeat_leads / leads` (0 without leads).
    repeat_ratio: f64,
}

/// `GET /api/reports/dedup` (`siyu_engine::dedup::DedupReport`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupReport {
    #[schema(required)]
    from: Option<Time>,
    #[schema(required)]
    to: Option<Time>,
    channels: Vec<DedupRow>,
    total: DedupRow,
    /// People who left leads through more than one channel.
    multi_channel_people: u64,
    /// `overlap[i][j]`: people with leads through both `channels[i]` and `channels[j]`.
    overlap: Vec<Vec<u64>>,
}

// ---------------------------------------------------------------------------------------------
// Layers (crate::layers)

/// Fans per layer (`siyu_engine::LayerCounts`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LayerCounts {
    potential: u64,
    passerby: u64,
    favorable: u64,
    true_love: u64,
}

/// `GET /api/reports/layers`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LayerReport {
    as_of: Time,
    potential: u64,
    passerby: u64,
    favorable: u64,
    true_love: u64,
    total: u64,
}

/// A flow row's label: a layer, or `new` for fans that did not exist at `from`.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlowFrom {
    Potential,
    Passerby,
    Favorable,
    TrueLove,
    New,
}

/// Where fans that were in `from` are at the end.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowRow {
    from: FlowFrom,
    to: LayerCounts,
}

/// `GET /api/reports/flow` (`siyu_engine::Flow`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    from: Time,
    to: Time,
    rows: Vec<FlowRow>,
    at_from: LayerCounts,
    at_to: LayerCounts,
    moved_up: u64,
    moved_down: u64,
    stayed: u64,
    /// The series: `from`, each local midnight between (every `step_days` days), `to`.
    daily: Vec<SeriesPoint>,
    /// Days between points: 1 unless the period has more than 400 days.
    #[schema(minimum = 1)]
    step_days: u32,
}

/// One point of a flow's series.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeriesPoint {
    at: Time,
    counts: LayerCounts,
    /// Since the point before: fans who moved up, down, stayed, or are new (the first point:
    /// every fan is new).
    #[schema(minimum = 0)]
    up: u64,
    #[schema(minimum = 0)]
    down: u64,
    #[schema(minimum = 0)]
    stayed: u64,
    #[schema(minimum = 0)]
    new: u64,
}

// ---------------------------------------------------------------------------------------------
// Analytics (crate::analytics, siyu_engine::analytics)

/// One step of the funnel.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunnelStep {
    /// The layer at the start.
    from: String,
    /// The next layer.
    to: String,
    /// Fans in `from` at the start.
    #[schema(minimum = 0)]
    fans: u64,
    /// Of them, fans in `to` or above at the end.
    #[schema(minimum = 0)]
    reached: u64,
    /// `reached / fans`; null when no fan stood in `from`.
    rate: Option<f64>,
}

/// `GET /api/reports/funnel`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Funnel {
    from: Time,
    to: Time,
    at_from: LayerCounts,
    at_to: LayerCounts,
    /// Fans who did not exist at the start, by their layer at the end.
    new_fans: LayerCounts,
    /// potential → passerby, passerby → favorable, favorable → true_love.
    steps: Vec<FunnelStep>,
}

/// Orders and revenue credited to a domain by one model (fractions under linear credit).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credit {
    orders: f64,
    /// Revenue in fen (0.01 CNY).
    revenue_fen: f64,
}

/// One domain's credit.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainCredit {
    /// `public`, `commercial` or `private`.
    domain: String,
    first_touch: Credit,
    last_touch: Credit,
    linear: Credit,
}

/// `GET /api/reports/attribution`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attribution {
    from: Time,
    to: Time,
    #[schema(minimum = 0)]
    orders: u64,
    #[schema(minimum = 0)]
    buyers: u64,
    /// The orders' revenue in fen; each model's credits add up to it.
    #[schema(minimum = 0)]
    revenue_fen: u64,
    /// Orders whose path saw more than one domain.
    #[schema(minimum = 0)]
    crossed: u64,
    crossed_rate: Option<f64>,
    by_domain: Vec<DomainCredit>,
}

/// Lifetime value figures of one group of fans.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LtvRow {
    /// A month (`2026-11`), a domain or a layer.
    key: String,
    #[schema(minimum = 0)]
    fans: u64,
    #[schema(minimum = 0)]
    buyers: u64,
    #[schema(minimum = 0)]
    orders: u64,
    #[schema(minimum = 0)]
    revenue_fen: u64,
    #[schema(minimum = 0)]
    refunds_fen: u64,
    /// (revenue − refunds) / fans, in fen.
    revenue_per_fan_fen: Option<f64>,
    #[schema(minimum = 0)]
    repeat_buyers: u64,
    /// Buyers with two orders or more, over buyers.
    repeat_rate: Option<f64>,
}

/// `GET /api/reports/ltv`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ltv {
    as_of: Time,
    total: LtvRow,
    by_cohort: Vec<LtvRow>,
    by_first_domain: Vec<LtvRow>,
    by_layer: Vec<LtvRow>,
}

/// One weekly cohort.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cohort {
    /// The local Monday the week starts (`2026-11-30`).
    week: String,
    #[schema(minimum = 0)]
    fans: u64,
    /// Active fans in each week from the cohort's own (weeks not over are left out).
    active: Vec<u64>,
    rates: Vec<f64>,
}

/// `GET /api/reports/retention`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    from: Time,
    to: Time,
    as_of: Time,
    #[schema(minimum = 1, maximum = 52)]
    weeks: u64,
    cohorts: Vec<Cohort>,
}

/// The BG/NBD parameters (`alpha` in days).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BgNbdParams {
    r: f64,
    alpha: f64,
    a: f64,
    b: f64,
}

/// The Gamma-Gamma parameters (`v` in yuan).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GammaGammaParams {
    p: f64,
    q: f64,
    v: f64,
}

/// A BG/NBD fit.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BgNbdFit {
    params: BgNbdParams,
    /// The full log-likelihood at the parameters.
    log_likelihood: f64,
    #[schema(minimum = 0)]
    iterations: u32,
    converged: bool,
    #[schema(minimum = 0)]
    customers: u64,
    /// Distinct rows after collapsing identical buyers.
    #[schema(minimum = 0)]
    rows: u64,
}

/// A Gamma-Gamma fit.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GammaGammaFit {
    params: GammaGammaParams,
    log_likelihood: f64,
    #[schema(minimum = 0)]
    iterations: u32,
    converged: bool,
    #[schema(minimum = 0)]
    customers: u64,
    #[schema(minimum = 0)]
    rows: u64,
}

/// Predicted figures of one group of buyers.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictedRow {
    /// A layer, a month (`2026-11`), or `total`.
    key: String,
    #[schema(minimum = 0)]
    buyers: u64,
    p_alive_mean: f64,
    /// Buyers more likely alive than not.
    #[schema(minimum = 0)]
    likely_alive: u64,
    expected_orders: f64,
    /// Fen; null when Gamma-Gamma could not be fitted.
    expected_revenue_fen: Option<f64>,
}

/// `GET /api/reports/ltv/predicted`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictedLtv {
    as_of: Time,
    #[schema(minimum = 1, maximum = 3650)]
    horizon_days: u32,
    /// Buyers whose first order is the day of `as_of`, left out.
    #[schema(minimum = 0)]
    too_new: u64,
    bgnbd: BgNbdFit,
    gamma_gamma: Option<GammaGammaFit>,
    gamma_gamma_error: Option<String>,
    total: PredictedRow,
    by_layer: Vec<PredictedRow>,
    by_cohort: Vec<PredictedRow>,
}

/// `POST /api/spend`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpendImport {
    #[schema(minimum = 0)]
    rows: u64,
    /// Rows that replaced one of the same date, channel and domain.
    #[schema(minimum = 0)]
    replaced: u64,
    /// The file's total, in fen.
    #[schema(minimum = 0)]
    amount_fen: i64,
    first_date: Option<String>,
    last_date: Option<String>,
}

/// One line of the CAC report.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CacRow {
    /// A channel, a domain, or `total`.
    key: String,
    #[schema(minimum = 0)]
    spend_fen: i64,
    #[schema(minimum = 0)]
    new_followers: u64,
    #[schema(minimum = 0)]
    unique_leads: u64,
    /// Shown, not counted as acquired.
    #[schema(minimum = 0)]
    repeat_leads: u64,
    cac_per_follower_fen: Option<f64>,
    cac_per_lead_fen: Option<f64>,
}

/// `GET /api/reports/cac`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cac {
    from: Time,
    to: Time,
    /// The local days whose spend counts (both included).
    first_day: String,
    last_day: String,
    total: CacRow,
    by_channel: Vec<CacRow>,
    by_domain: Vec<CacRow>,
}

/// Why a layer changed.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransitionCause {
    Event,
    Decay,
    Rules,
    Identity,
}

/// One layer change (`siyu_app::LayerChange`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    id: i64,
    fan: i64,
    /// `null`: the fan is new.
    #[schema(required)]
    from: Option<Layer>,
    to: Layer,
    at: Time,
    cause: TransitionCause,
    /// The causing event's sequence number and id (cause `event`).
    #[schema(required)]
    seq: Option<i64>,
    #[schema(required)]
    event_id: Option<String>,
}

/// `GET /api/layers/transitions`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transitions {
    transitions: Vec<Transition>,
    /// Pass as `after` for the next page.
    next_after: i64,
}

/// `true_love` thresholds.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrueLove {
    orders: u32,
    orders_with_engagement: u32,
    engagement_with_order: u32,
    group_engagement: u32,
}

/// `favorable` thresholds.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Favorable {
    engagement: u32,
}

/// The layer rules in force (`siyu_engine::Rules`; docs/layers.md).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// How many rules files were put in force for the tenant; 0: none, the defaults.
    #[schema(minimum = 0)]
    version: i64,
    engagement_window_days: u32,
    orders_window_days: u32,
    live_watch_seconds_per_point: u32,
    /// Engagement points per catalogue type (types weighing nothing are left out).
    weights: BTreeMap<String, u32>,
    true_love: TrueLove,
    favorable: Favorable,
}

// ---------------------------------------------------------------------------------------------
// Segments and tags (crate::segments; siyu_app::segments)

/// `POST /api/segments/preview`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// A segment expression (docs/segments.md).
    #[schema(example = "layer >= favorable")]
    expr: String,
    /// Evaluate as of this instant (default now).
    as_of: Option<TimeIn>,
    /// How many fans to describe (default 20).
    #[schema(minimum = 0, maximum = 1000)]
    sample: Option<u32>,
}

/// One fan of an audience (`siyu_app::segments::Member`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Member {
    fan: i64,
    #[schema(required)]
    layer: Option<Layer>,
    engagement_30d: u32,
    orders_180d: u32,
    /// `kind:value`, every identity of the fan.
    identities: Vec<String>,
}

/// A count or preview (`siyu_app::segments::Answer`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentCount {
    count: u64,
    /// Fans that exist as of `as_of`.
    fans: u64,
    as_of: Time,
    /// The first fans, by id; absent when there are none.
    sample: Option<Vec<Member>>,
    /// Evaluation time in milliseconds.
    took_ms: f64,
}

/// `POST /api/segments`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentCreate {
    /// 1–64 characters, no control characters; unique in the tenant.
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    #[schema(example = "layer >= favorable and count(order, 180d) >= 1")]
    expr: String,
    /// A tag its members carry, kept live: 1–64 characters, no control characters.
    #[schema(min_length = 1, max_length = 64)]
    tag: Option<String>,
}

/// A saved segment (`siyu_app::segments::SavedView`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    id: i64,
    name: String,
    expr: String,
    #[schema(required)]
    tag: Option<String>,
    created_at: Time,
    /// Members now.
    count: u64,
    as_of: Time,
}

/// `GET /api/segments`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentList {
    segments: Vec<Segment>,
}

/// `GET /api/segments/{id}/members`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Members {
    count: u64,
    offset: u64,
    members: Vec<Member>,
    /// Pass as `offset` for the next page; `null` on the last.
    #[schema(required)]
    next_offset: Option<u64>,
}

/// `DELETE /api/segments/{id}`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deleted {
    /// The deleted segment's id.
    deleted: i64,
}

/// `segment_entered` or `segment_exited`.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerType {
    SegmentEntered,
    SegmentExited,
}

/// Why a fan entered or left a segment.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerCause {
    Event,
    Time,
    Identity,
    Rules,
    Tag,
    Created,
}

/// One trigger (`siyu_app::segments::Trigger`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    id: i64,
    r#type: TriggerType,
    segment: i64,
    fan: i64,
    at: Time,
    cause: TriggerCause,
    #[schema(required)]
    seq: Option<i64>,
    #[schema(required)]
    event_id: Option<String>,
}

/// `GET /api/segments/triggers`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    triggers: Vec<Trigger>,
    /// Pass as `after` for the next page.
    next_after: i64,
}

/// A type of the trigger stream (`siyu_domain::trigger::TriggerType`).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamType {
    Event,
    LayerChanged,
    SegmentEntered,
    SegmentExited,
    TagAdded,
    TagRemoved,
}

/// What caused a derived trigger (`siyu_domain::trigger::Cause`).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamCause {
    Event,
    Decay,
    Time,
    Identity,
    Rules,
    Tag,
    Created,
    Manual,
    Segment,
}

/// One trigger of the stream (`siyu_domain::trigger::Trigger`): `id`, `type`, `fan`, `at`,
/// and the fields of its type — `event`: `seq`, `event_id`, `event_type`; `layer_changed`:
/// `from`, `to`, `cause` (with `seq`, `event_id` for cause `event`); `segment_entered` /
/// `segment_exited`: `segment`, `cause` (the same); `tag_added` / `tag_removed`: `tag`,
/// `source`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamTrigger {
    /// Its position in the stream: pass it as `after` to read on.
    id: i64,
    r#type: StreamType,
    /// The fan as it is now (after merges); `null` only for an event whose fan is unknown.
    #[schema(required)]
    fan: Option<i64>,
    at: Time,
    seq: Option<i64>,
    event_id: Option<String>,
    event_type: Option<String>,
    /// `null`: the fan is new.
    from: Option<Layer>,
    to: Option<Layer>,
    cause: Option<StreamCause>,
    segment: Option<i64>,
    tag: Option<String>,
    /// `manual`, or `segment:<id>` for a saved segment's automatic tag.
    source: Option<String>,
}

/// `GET /api/triggers`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerPage {
    triggers: Vec<StreamTrigger>,
    /// Pass as `after` for the next page (past every trigger looked at, shown or filtered).
    next_after: i64,
}

/// A consumer's cursor.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    consumer: String,
    /// It has handled every trigger up to this position.
    after: i64,
    #[schema(required)]
    updated_at: Option<Time>,
}

/// `GET /api/triggers/cursors`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cursors {
    cursors: Vec<Cursor>,
}

/// `PUT /api/triggers/cursors/{consumer}`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CursorRequest {
    /// The position of the last trigger handled (a trigger's `id`, or a page's `next_after`).
    #[schema(minimum = 0)]
    after: i64,
}

/// `POST /api/tags`: a tag for one fan (`fan`) or every fan of an expression (`expr`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagRequest {
    /// 1–64 characters, no control characters.
    #[schema(min_length = 1, max_length = 64, example = "高意向")]
    tag: String,
    fan: Option<i64>,
    expr: Option<String>,
    /// Remove the tag instead of adding it.
    remove: Option<bool>,
}

/// `POST /api/tags/auto`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoTagRequest {
    /// 1–64 characters, no control characters; the segment is named `tag:TAG`.
    #[schema(min_length = 1, max_length = 64)]
    tag: String,
    expr: String,
}

/// `POST /api/tags`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Changed {
    /// Fans whose tags changed.
    changed: u64,
}

/// `added` or `removed`.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TagChangeKind {
    Added,
    Removed,
}

/// One tag change (`siyu_app::segments::TagEntry`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagEntry {
    id: i64,
    /// The fan id the tag was set on (the fan's own, or one merged into it).
    fan: i64,
    tag: String,
    change: TagChangeKind,
    at: Time,
    /// `manual`, or `segment:<id>` for an automatic tag.
    source: String,
}

/// `GET /api/fans/{id}/tags` (`siyu_app::segments::TagHistory`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagHistory {
    fan: i64,
    /// The tags on now.
    tags: Vec<String>,
    history: Vec<TagEntry>,
}

// ---------------------------------------------------------------------------------------------
// Connectors (crate::connectors; siyu_app::connectors)

/// The Douyin connector (`siyu_app::connectors::douyin_view`); never the secret itself.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DouyinConnector {
    #[schema(example = "douyin")]
    connector: String,
    tenant: String,
    client_secret_set: bool,
    /// Where Douyin delivers.
    #[schema(example = "/webhooks/douyin/acme")]
    webhook_path: String,
}

/// A connector setting: a string; a number is taken as its digits.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum Setting {
    Text(String),
    Number(f64),
}

/// `PUT /api/connectors/douyin`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DouyinChange {
    /// The app's client secret: deliveries are signed with it. 1–512 characters, no control
    /// characters or surrounding spaces.
    client_secret: Setting,
}

/// Where a poller stands.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// Every lead created before this is stored.
    done_until: Time,
    /// The end of the window being paged through, if one is open.
    #[schema(required)]
    window_end: Option<Time>,
    /// The next page of that window, from 1.
    next_page: u32,
}

/// The Ocean Engine lead poller (`siyu_app::connectors::oceanengine_view`); never the token.
/// Without a poller set up, only `connector`, `tenant` and `access_token_set: false`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OceanEngineConnector {
    #[schema(example = "oceanengine")]
    connector: String,
    tenant: String,
    access_token_set: bool,
    advertiser_id: Option<String>,
    base_url: Option<String>,
    start: Option<Time>,
    page_size: Option<u32>,
    position: Option<Position>,
}

/// `PUT /api/connectors/oceanengine`: absent fields keep their value.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OceanEngineChange {
    /// Digits.
    advertiser_id: Option<Setting>,
    access_token: Option<Setting>,
    /// The lead API's origin (default `https://api.oceanengine.com`).
    base_url: Option<Setting>,
    /// Leads created before this are not pulled (default 30 days back).
    start: Option<TimeIn>,
    #[schema(minimum = 1)]
    page_size: Option<u32>,
}

/// A Douyin delivery (Douyin Open Platform's event subscription); docs/connectors.md.
#[derive(ToSchema)]
pub struct DouyinDelivery {
    /// `verify_webhook`, `im_receive_msg`, `group_fans_event`, …
    event: String,
    client_key: Option<String>,
    from_user_id: Option<String>,
    to_user_id: Option<String>,
    /// An object, or a string holding the object.
    content: Option<Value>,
    log_id: Option<String>,
}

/// `verify_webhook`: the challenge echoed.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    challenge: Value,
}

/// A delivery stored.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryStored {
    #[schema(example = "ok")]
    status: String,
    /// `douyin:` + the body's `log_id`, else `douyin:sha256:` + the body's SHA-256 hex.
    event_id: String,
    /// Already stored: a retried delivery.
    duplicate: bool,
}

/// The answer to a genuine delivery.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum DeliveryAnswer {
    #[schema(title = "Challenge")]
    Challenge(Challenge),
    #[schema(title = "DeliveryStored")]
    Stored(DeliveryStored),
}

// ---------------------------------------------------------------------------------------------
// Journeys (crate::journeys; siyu_app::journeys)

/// `POST /api/journeys` as JSON.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JourneyApply {
    /// The journey file (TOML, docs/journeys.md).
    #[schema(
        example = "name = \"welcome\"\ntrigger = { event = \"follow\" }\n\n[[steps]]\nid = \"hello\"\ntype = \"send\"\nchannel = \"webhook\"\ntext = \"欢迎关注！\"\n"
    )]
    definition: String,
}

/// A journey file applied (`siyu_app::journeys::Applied`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Applied {
    #[schema(example = "welcome")]
    journey: String,
    /// The version in force, from 1.
    #[schema(minimum = 1)]
    version: i64,
    /// The file was the version in force already: nothing changed.
    unchanged: bool,
}

/// A journey as listed (`siyu_app::journeys::JourneySummary`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JourneySummary {
    #[schema(example = "welcome")]
    name: String,
    #[schema(minimum = 1)]
    version: i64,
    /// The kill switch: a paused journey starts no run and moves none.
    paused: bool,
    /// The trigger, as the file writes it.
    #[schema(example = "event = \"follow\"")]
    trigger: String,
    /// How many steps.
    #[schema(minimum = 0)]
    steps: u64,
    /// When this version was applied.
    applied_at: Time,
    /// When it last changed (applied, paused or resumed).
    updated_at: Time,
}

/// `GET /api/journeys`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JourneyList {
    journeys: Vec<JourneySummary>,
}

/// A step's type and channel (`siyu_app::journeys::StepView`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepView {
    id: String,
    /// `send`, `wait`, `branch`, `tag`, `untag`, `invite_group`, `assign_lead`, `task`, `exit`.
    #[serde(rename = "type")]
    ty: String,
    /// For `send` and `invite_group`: `webhook`, `douyin_im`, `wecom_robot` or `task`.
    channel: Option<String>,
}

/// A journey with its file (`siyu_app::journeys::JourneyDetail`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JourneyDetail {
    name: String,
    #[schema(minimum = 1)]
    version: i64,
    paused: bool,
    trigger: String,
    #[schema(minimum = 0)]
    steps: u64,
    applied_at: Time,
    updated_at: Time,
    /// The journey file of this version, as applied.
    definition: String,
    /// The steps, in order.
    step_list: Vec<StepView>,
}

/// A journey's runs (`siyu_app::journeys::RunTotals`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunTotals {
    entered: i64,
    /// Waiting at a step (a wait, or quiet hours).
    waiting: i64,
    awaiting_goal: i64,
    /// Held by a pause.
    held: i64,
    completed: i64,
    converted: i64,
    merged: i64,
    /// converted / entered (0 with no entries).
    conversion_rate: f64,
}

/// One step's numbers (`siyu_app::journeys::StepReport`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepReport {
    id: String,
    /// The step's type, or `removed` for a step of an older version only.
    #[serde(rename = "type")]
    ty: String,
    channel: Option<String>,
    /// Step executions.
    entered: i64,
    /// Runs waiting at the step now.
    waiting: i64,
    /// Messages handed to the channel.
    sent: i64,
    delivered: i64,
    pending: i64,
    /// Given up (dead letters).
    failed: i64,
    /// Skipped, by reason.
    skipped: BTreeMap<String, i64>,
    /// Forbidden by the channel's rules and handed to staff as a task, by reason.
    fell_back: BTreeMap<String, i64>,
    converted: i64,
    replied: i64,
}

/// One variant's numbers (`siyu_app::journeys::VariantReport`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantReport {
    step: String,
    variant: String,
    sent: i64,
    converted: i64,
    /// Goal windows closed without the goal.
    failed: i64,
    /// converted / sent.
    rate: f64,
    /// Wilson 95% interval of the rate.
    interval95: [f64; 2],
    /// The share of new entries Thompson sampling gives it now.
    share: f64,
}

/// `GET /api/reports/leads` (`siyu_app::leads::report::LeadReport`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadReport {
    leads: u64,
    open: u64,
    /// Open leads without an owner.
    pooled: u64,
    /// Every state in the path's order, with its Chinese label; zeros included.
    by_state: Vec<LeadStateCount>,
    /// By the channel of a lead's first arrival, with the repeats each channel brought.
    by_channel: Vec<LeadChannelCount>,
    by_agent: Vec<LeadAgentCount>,
    /// From a lead's creation to its first contact, over leads contacted, in minutes.
    first_contact_minutes: LeadPercentiles,
    /// Of the leads whose first contact was due, the share contacted by the deadline.
    #[schema(required)]
    first_contact_in_time: Option<f64>,
    /// Repeat arrivals absorbed per team (the follow-ups dedup saved).
    repeats_by_team: Vec<LeadTeamRepeats>,
    repeats: u64,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadStateCount {
    state: String,
    label: String,
    leads: u64,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadChannelCount {
    channel: String,
    leads: u64,
    repeats: u64,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadAgentCount {
    agent: String,
    leads: u64,
    open: u64,
    won: u64,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadPercentiles {
    count: u64,
    #[schema(required)]
    p50: Option<f64>,
    #[schema(required)]
    p90: Option<f64>,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadTeamRepeats {
    /// `null` for leads no rule placed in a team.
    #[schema(required)]
    team: Option<String>,
    leads: u64,
    repeats: u64,
}

/// `GET /api/journeys/{name}/report` (`siyu_app::journeys::Report`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JourneyReport {
    journey: String,
    version: i64,
    paused: bool,
    runs: RunTotals,
    steps: Vec<StepReport>,
    variants: Vec<VariantReport>,
}

/// The tenant's send policy (`siyu_app::journeys::settings::PolicySettings`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// An IANA time zone: quiet hours, `wait until`, schedules and daily caps use it.
    #[schema(example = "Asia/Shanghai")]
    time_zone: String,
    /// Quiet hours, `HH:MM` local; equal start and end: none.
    #[schema(example = "22:00")]
    quiet_start: String,
    #[schema(example = "08:00")]
    quiet_end: String,
    /// Sends per fan per channel per local day (1–1000); `null`: no cap.
    #[schema(required, minimum = 1, maximum = 1000)]
    daily_cap: Option<i32>,
    /// Douyin: how long after the fan's latest message a reply may cite it.
    #[schema(example = "48h")]
    douyin_reply_window: String,
    /// Douyin: replies per incoming message (0–100).
    #[schema(minimum = 0, maximum = 100)]
    douyin_replies_per_message: i32,
    /// Douyin: proactive messages per authorized fan per local day (0–100).
    #[schema(minimum = 0, maximum = 100)]
    douyin_proactive_per_day: i32,
}

/// `PUT /api/journeys/policy`: the fields to change; the others keep their value.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyChange {
    time_zone: Option<String>,
    quiet_start: Option<String>,
    quiet_end: Option<String>,
    /// `null`: no cap.
    #[schema(minimum = 1, maximum = 1000)]
    daily_cap: Option<i32>,
    douyin_reply_window: Option<String>,
    #[schema(minimum = 0, maximum = 100)]
    douyin_replies_per_message: Option<i32>,
    #[schema(minimum = 0, maximum = 100)]
    douyin_proactive_per_day: Option<i32>,
}

/// An outbox row given up (`siyu_app::journeys::OutboxView`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    id: i64,
    #[schema(example = "webhook")]
    channel: String,
    /// The run it belongs to.
    run: i64,
    step: String,
    fan_id: i64,
    /// What the channel is given to drop a repeat.
    idempotency_key: String,
    /// `pending`, `delivered` or `dead`.
    #[schema(example = "dead")]
    state: String,
    attempts: i32,
    created_at: Time,
    next_at: Time,
    settled_at: Option<Time>,
    /// The channel's last answer.
    #[schema(required)]
    answer: Option<String>,
    /// What was (to be) sent.
    payload: Value,
}

/// `GET /api/dead-letters`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetters {
    /// Newest first.
    dead_letters: Vec<DeadLetter>,
}

/// `POST /api/dead-letters/retry`: either `ids` or `all: true`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// These dead letters (1 to 10,000 ids).
    ids: Option<Vec<i64>>,
    /// Every dead letter of the tenant.
    all: Option<bool>,
}

/// How many dead letters went back to their queue.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retried {
    #[schema(minimum = 0)]
    retried: u64,
}

/// A staff task (`siyu_app::journeys::TaskView`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Task {
    id: i64,
    team: String,
    text: String,
    #[schema(required)]
    fan_id: Option<i64>,
    #[schema(required)]
    run: Option<i64>,
    #[schema(required)]
    step: Option<String>,
    /// `open`, `claimed` or `done`.
    #[schema(example = "open")]
    state: String,
    #[schema(required)]
    agent: Option<String>,
    #[schema(required)]
    outcome: Option<String>,
    created_at: Time,
    #[schema(required)]
    due_at: Option<Time>,
    /// Open or claimed past its due time.
    overdue: bool,
}

/// `GET /api/tasks`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tasks {
    /// Oldest first.
    tasks: Vec<Task>,
}

/// `POST /api/tasks/{id}/claim`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskClaim {
    /// 1–64 characters, no control characters or surrounding spaces.
    #[schema(example = "li.na")]
    agent: String,
}

/// `POST /api/tasks/{id}/done`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskDone {
    #[schema(example = "li.na")]
    agent: String,
    /// 1–1000 characters.
    #[schema(example = "called; will visit the shop on Saturday")]
    outcome: String,
}

// ---------------------------------------------------------------------------------------------
// Channels (crate::channels; siyu_app::channels)

/// A channel (`siyu_app::channels::channel_view`): never a credential, only whether it is
/// set. Without settings, only `channel`, `configured: false`, `killed`, `secret_set` and
/// `credential`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// `webhook`, `douyin_im` or `wecom_robot`.
    #[schema(example = "webhook")]
    channel: String,
    configured: bool,
    /// The kill switch: nothing is sent through it while set.
    killed: bool,
    /// Whether its credential is stored.
    secret_set: bool,
    /// The name of the channel's credential field (`secret`, `access_token`, `url`).
    credential: String,
    timeout_ms: Option<u64>,
    concurrency: Option<u32>,
    /// Webhook: where deliveries are posted (scheme, host, port and path; no query).
    url: Option<String>,
    /// Douyin IM: the Open Platform's origin.
    base: Option<String>,
    /// Douyin IM: the business account messages are sent as.
    open_id: Option<String>,
    /// WeCom robot: the webhook URL's host.
    host: Option<String>,
}

/// `GET /api/channels`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Channels {
    channels: Vec<Channel>,
}

/// `PUT /api/channels/{kind}`: the fields of that kind (webhook: `url`, `secret`; Douyin IM:
/// `base`, `access_token`, `open_id`; WeCom robot: `url` with its `key`), and `timeout_ms`,
/// `concurrency`, `killed` for every kind. A field of another kind is refused.
#[derive(ToSchema)]
pub struct ChannelChange {
    /// Webhook: the HTTPS endpoint; WeCom robot: the robot's webhook URL with `?key=`
    /// (the key is its credential).
    url: Option<String>,
    /// Webhook: the HMAC-SHA256 key of `X-Siyu-Signature` (write-only).
    secret: Option<String>,
    /// Douyin IM: the Open Platform's origin (default `https://open.douyin.com`).
    base: Option<String>,
    /// Douyin IM: the business account's token (write-only).
    access_token: Option<String>,
    /// Douyin IM: the business account's open_id.
    open_id: Option<String>,
    #[schema(minimum = 100, maximum = 120000)]
    timeout_ms: Option<u64>,
    #[schema(minimum = 1, maximum = 256)]
    concurrency: Option<u32>,
    killed: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Leads (crate::leads; siyu_app::leads)

/// A team (`siyu_app::leads::TeamView`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Team {
    #[schema(example = "north")]
    name: String,
    /// `round_robin`, `least_loaded` or `weighted`.
    #[schema(example = "round_robin")]
    strategy: String,
    /// How soon an assigned lead must be contacted (`2h`).
    #[schema(required)]
    first_contact: Option<String>,
    /// A lead nobody followed up for this long goes back to the pool (`3d`).
    #[schema(required)]
    recycle_after: Option<String>,
    /// Who an overdue lead is escalated to.
    #[schema(required)]
    lead_agent: Option<String>,
    /// `reassign` or `task`.
    #[schema(example = "reassign")]
    escalate: String,
    /// The team's agents' names.
    agents: Vec<String>,
}

/// `GET /api/teams`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Teams {
    teams: Vec<Team>,
}

/// `POST /api/teams`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamChange {
    /// 1–64 letters, digits, `_`, `-` or `.`.
    #[schema(example = "north")]
    name: String,
    /// `round_robin` (default), `least_loaded` or `weighted`.
    strategy: Option<String>,
    /// A duration (`2h`).
    first_contact: Option<String>,
    /// A duration (`3d`).
    recycle_after: Option<String>,
    /// An agent's name.
    lead_agent: Option<String>,
    /// `reassign` (default) or `task`.
    escalate: Option<String>,
}

/// An agent (`siyu_app::leads::AgentView`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    #[schema(example = "li.na")]
    name: String,
    team: String,
    /// Open leads at most; `null`: no limit.
    #[schema(required)]
    capacity: Option<i32>,
    /// New leads a day at most; `null`: no limit.
    #[schema(required)]
    daily_cap: Option<i32>,
    /// Working hours in the tenant's time zone (`09:00-21:00`); `null`: always.
    #[schema(required)]
    hours: Option<String>,
    weight: i32,
    active: bool,
    /// Open leads owned now.
    open_leads: i64,
    /// Leads given today.
    today: i64,
}

/// `GET /api/agents`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Agents {
    agents: Vec<Agent>,
}

/// `POST /api/agents`, `PATCH /api/agents/{name}` (no `name` then): fields left out keep
/// their value.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentChange {
    /// `POST` only: 1–64 letters, digits, `_`, `-` or `.`.
    name: Option<String>,
    /// Required for a new agent.
    team: Option<String>,
    #[schema(minimum = 0, maximum = 1000000)]
    capacity: Option<i64>,
    #[schema(minimum = 0, maximum = 1000000)]
    daily_cap: Option<i64>,
    /// `HH:MM-HH:MM`, or `all`.
    #[schema(example = "09:00-21:00")]
    hours: Option<String>,
    #[schema(minimum = 1, maximum = 1000)]
    weight: Option<i64>,
    active: Option<bool>,
}

/// A routing rule.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    id: i64,
    /// 1 is tried first.
    position: i32,
    /// A segment expression over the fan.
    #[serde(rename = "if")]
    #[schema(example = "tag(\"vip\")")]
    expr: String,
    team: String,
    created_at: Time,
}

/// The routing rules, in order.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Routes {
    routes: Vec<Route>,
}

/// `POST /api/routes`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteNew {
    /// A segment expression; every tag it names must exist.
    #[serde(rename = "if")]
    #[schema(example = "tag(\"vip\")")]
    expr: String,
    team: String,
}

/// One arrival of a lead: a lead form of the person through a channel.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Arrival {
    #[schema(example = "live")]
    channel: String,
    ts: Time,
    event_id: String,
    /// The person had an open lead already: kept on it, with its owner.
    repeat: bool,
}

/// A lead (`siyu_app::leads::lead_json`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Lead {
    id: i64,
    fan_id: i64,
    /// `new`, `contacted`, `qualified`, `won`, `lost`, `invalid` or `merged` (Siyu's own: the newer of two leads of one person).
    #[schema(example = "new")]
    state: String,
    /// `null` while in the team's pool.
    #[schema(required)]
    owner: Option<String>,
    #[schema(required)]
    team: Option<String>,
    #[schema(required)]
    channel: Option<String>,
    #[schema(required)]
    province: Option<String>,
    #[schema(required)]
    city: Option<String>,
    #[schema(required)]
    clue_state: Option<String>,
    #[schema(required)]
    intention: Option<String>,
    created_at: Time,
    #[schema(required)]
    assigned_at: Option<Time>,
    #[schema(required)]
    first_contact_due: Option<Time>,
    #[schema(required)]
    first_contact_at: Option<Time>,
    #[schema(required)]
    last_follow_up_at: Option<Time>,
    #[schema(required)]
    closed_at: Option<Time>,
    arrivals: Vec<Arrival>,
}

/// `GET /api/leads`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Leads {
    leads: Vec<Lead>,
}

/// One line of a lead's log.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadLogLine {
    at: Time,
    /// `call`, `message`, `visit`, `note`, `state`, `assigned`, `claimed`, …
    kind: String,
    #[schema(required)]
    agent: Option<String>,
    #[schema(required)]
    result: Option<String>,
    #[schema(required)]
    detail: Option<Value>,
}

/// `GET /api/leads/{id}`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadDetail {
    lead: Lead,
    /// Oldest first.
    log: Vec<LeadLogLine>,
}

/// `POST /api/leads/{id}/log`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadFollowUp {
    /// `call`, `message`, `visit` or `note`.
    #[schema(example = "call")]
    kind: String,
    result: Option<String>,
    agent: Option<String>,
}

/// `POST /api/leads/{id}/state`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadStateChange {
    #[schema(example = "contacted")]
    state: String,
    agent: Option<String>,
}

/// `POST /api/leads/{id}/assign`, `/claim`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadAgent {
    #[schema(example = "li.na")]
    agent: String,
}

/// One local day of a fan group.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupDay {
    /// `YYYY-MM-DD`, in the tenant's time zone.
    #[schema(format = Date, example = "2026-11-20")]
    date: String,
    joins: i32,
    leaves: i32,
    messages: i32,
}

/// A fan group (粉丝群) with its activity (`siyu_app::leads::groups::GroupView`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Group {
    id: i64,
    /// What `group_*` events name in `props.group_id`.
    #[schema(example = "会员群 1")]
    name: String,
    /// Groups of one template fill in order; `external` for a group an event opened.
    #[schema(example = "会员群")]
    template: String,
    #[schema(minimum = 1, maximum = 100000)]
    capacity: i32,
    /// An agent's name.
    #[schema(required)]
    owner: Option<String>,
    /// Members now.
    members: i32,
    /// Seats held by invitations out (made in the last 3 days, not yet joined); placement
    /// counts them with the members.
    #[schema(minimum = 0)]
    invited: i64,
    /// Members who sent a message in the group in the last 7 days.
    #[schema(minimum = 0)]
    active_7d: u64,
    /// Over the 30 days of `daily`.
    joins: i64,
    leaves: i64,
    messages: i64,
    /// The last 30 local days, oldest first, days without activity as zeros.
    daily: Vec<GroupDay>,
}

/// `GET /api/groups`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Groups {
    groups: Vec<Group>,
}

/// `POST /api/groups`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupNew {
    /// 1–100 characters, not only spaces, no control characters; unique in the tenant.
    #[schema(example = "会员群 1", min_length = 1, max_length = 100)]
    name: String,
    /// 1–100 characters, as a name (default: the name).
    #[schema(example = "会员群", min_length = 1, max_length = 100)]
    template: Option<String>,
    /// Members at most (default 500).
    #[schema(minimum = 1, maximum = 100000)]
    capacity: Option<i64>,
    /// An agent's name.
    owner: Option<String>,
}
