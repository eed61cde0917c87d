//! The segment language: how operators say which fans a step is for.
//!
//! `layer >= favorable and count(live_watch, 7d) >= 2 and not count(order, 30d) > 0` is parsed
//! once into an [`Expr`]; the engine evaluates it over resolved fans as of any instant, with the
//! window semantics of docs/events.md (a window `7d` as of T is (T − 7 days, T]). Parsing is pure and
//! checks everything that can be checked without data: event types, summable properties, layer
//! and domain names, window units. Errors name the column (1-based, in characters) and what was
//! expected there, with a suggestion for a misspelt name. `Expr`'s `Display` is the canonical
//! form, which parses back to the same `Expr`; docs/segments.md is the user's guide.

use std::fmt;
use std::str::FromStr;

use crate::event_type::{CatalogueType, CustomName, TypeName};
use crate::suggest::did_you_mean;
use crate::time::MS_PER_DAY;
use crate::{Domain, IdentityKind, Layer, Millis};

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    pub fn as_str(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Ne => "!=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }

    /// `a OP b`.
    pub fn test<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }
}

/// Which events a `count`/`last` looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeSel {
    /// `*`: every event.
    Any,
    Catalogue(CatalogueType),
    /// A custom `x_…` event type.
    Custom(String),
}

/// A property `sum` can add up: the catalogue's numeric properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SumProp {
    /// `order.amount` (CNY).
    OrderAmount,
    /// `refund.amount` (CNY).
    RefundAmount,
    /// `live_watch.duration_s` (seconds).
    LiveWatchSeconds,
}

impl SumProp {
    pub const ALL: [SumProp; 3] = [
        SumProp::OrderAmount,
        SumProp::RefundAmount,
        SumProp::LiveWatchSeconds,
    ];

    /// `type.prop` as written.
    pub fn as_str(self) -> &'static str {
        match self {
            SumProp::OrderAmount => "order.amount",
            SumProp::RefundAmount => "refund.amount",
            SumProp::LiveWatchSeconds => "live_watch.duration_s",
        }
    }

    pub fn event_type(self) -> CatalogueType {
        match self {
            SumProp::OrderAmount => CatalogueType::Order,
            SumProp::RefundAmount => CatalogueType::Refund,
            SumProp::LiveWatchSeconds => CatalogueType::LiveWatch,
        }
    }
}

/// One condition on a fan.
#[derive(Debug, Clone, PartialEq)]
pub enum Pred {
    /// `layer OP L` (layers are ordered potential < passerby < favorable < true_love).
    Layer(Cmp, Layer),
    /// `layer in (L, ...)`.
    LayerIn(Vec<Layer>),
    /// `follows`.
    Follows,
    /// `subscribed`.
    Subscribed,
    /// `in_group` (any group), or `in_group("GROUP_ID")`.
    InGroup(Option<String>),
    /// `tag("NAME")`.
    Tag(String),
    /// `has(KIND)`: the fan has an identity of this kind.
    Has(IdentityKind),
    /// `count(TYPE, WINDOW) OP N`.
    Count {
        ty: TypeSel,
        window: Millis,
        cmp: Cmp,
        n: f64,
    },
    /// `sum(TYPE.PROP, WINDOW) OP X`.
    Sum {
        prop: SumProp,
        window: Millis,
        cmp: Cmp,
        x: f64,
    },
    /// `engagement_30d OP N` (the layer feature; its window is the rules').
    Engagement(Cmp, f64),
    /// `orders_180d OP N` (the layer feature; its window is the rules').
    Orders(Cmp, f64),
    /// `last(TYPE) within WINDOW`: an event of TYPE in the window.
    Last { ty: TypeSel, window: Millis },
    /// `first_seen within WINDOW`: the fan's earliest event is in the window.
    FirstSeen { window: Millis },
    /// `first_domain = D` (or `!=`): the domain of the fan's earliest event.
    FirstDomain { eq: bool, domain: Domain },
}

/// A parsed segment expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Pred(Pred),
}

/// Why an expression does not parse: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based column, in characters.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

/// The longest expression [`parse`] reads, in characters.
pub const MAX_CHARS: usize = 10_000;

/// How deep parentheses and `not` may nest.
pub const MAX_DEPTH: usize = 64;

/// The longest window: 10 years of 365 days.
pub const MAX_WINDOW: Millis = 3650 * MS_PER_DAY;

const MS_PER_MINUTE: Millis = 60_000;
const MS_PER_HOUR: Millis = 3_600_000;

/// Parses a segment expression.
///
/// Keywords and names are case-insensitive; `&&`, `||` and `!` stand for `and`, `or` and `not`;
/// full-width parentheses, commas and spaces and Chinese quotes are read as their ASCII
/// equivalents, so text typed with a Chinese input method parses. `and` and `or` chains are
/// flattened, so the result is the canonical tree that [`Expr`]'s `Display` prints back.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    if text.char_indices().nth(MAX_CHARS).is_some() {
        return Err(error(
            MAX_CHARS + 1,
            format!("the expression is longer than {MAX_CHARS} characters"),
        ));
    }
    let mut p = Parser {
        toks: lex(text),
        pos: 0,
        depth: 0,
    };
    if p.peek().tok == Tok::End {
        return Err(error(
            1,
            "the expression is empty; expected a condition such as layer = favorable",
        ));
    }
    let expr = p.or()?;
    let t = p.peek();
    match t.tok {
        Tok::End => Ok(expr),
        Tok::RParen => Err(error(
            t.col,
            "found \")\" with no \"(\" open; expected \"and\", \"or\" or the end",
        )),
        _ => Err(p.fail("\"and\", \"or\" or the end")),
    }
}

impl FromStr for Expr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Expr, ParseError> {
        parse(s)
    }
}

impl Expr {
    /// Every predicate in the expression (its leaves), left to right, repeats included.
    pub fn preds(&self) -> Vec<&Pred> {
        let mut out = Vec::new();
        self.collect_preds(&mut out);
        out
    }

    fn collect_preds<'a>(&'a self, out: &mut Vec<&'a Pred>) {
        match self {
            Expr::And(items) | Expr::Or(items) => {
                for e in items {
                    e.collect_preds(out);
                }
            }
            Expr::Not(e) => e.collect_preds(out),
            Expr::Pred(p) => out.push(p),
        }
    }
}

impl ParseError {
    /// The expression with a caret under the column, then the message: for a terminal.
    ///
    /// ```text
    /// layer = favorite
    ///         ^ column 9: unknown layer "favorite"; expected ...
    /// ```
    pub fn pointer(&self, text: &str) -> String {
        let line: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let pad: String = text
            .chars()
            .take(self.column.saturating_sub(1))
            .map(|c| if is_wide(c) { '\u{3000}' } else { ' ' })
            .collect();
        format!("{line}\n{pad}^ {self}")
    }
}

/// Characters a terminal draws two cells wide (CJK and full-width forms), roughly.
fn is_wide(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x20000..=0x3FFFD)
}

fn error(column: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        column,
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Printing: the canonical form, which parses back to the same `Expr`.
// ---------------------------------------------------------------------------------------------

impl fmt::Display for Cmp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `*`, the catalogue name, or the custom name as stored (`x_signup`).
impl fmt::Display for TypeSel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeSel::Any => f.write_str("*"),
            TypeSel::Catalogue(t) => f.write_str(t.as_str()),
            TypeSel::Custom(name) => f.write_str(name),
        }
    }
}

impl fmt::Display for SumProp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A window in the largest of d, h, m that divides it (`7d`, `36h`, `90m`).
struct Window(Millis);

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms > 0 && ms % MS_PER_DAY == 0 {
            write!(f, "{}d", ms / MS_PER_DAY)
        } else if ms > 0 && ms % MS_PER_HOUR == 0 {
            write!(f, "{}h", ms / MS_PER_HOUR)
        } else if ms > 0 && ms % MS_PER_MINUTE == 0 {
            write!(f, "{}m", ms / MS_PER_MINUTE)
        } else {
            // Not a window the parser makes; printed so that it is at least visible.
            write!(f, "{ms}ms")
        }
    }
}

/// A double-quoted string with `"` and `\` escaped.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            if c == '"' || c == '\\' {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("\"")
    }
}

impl fmt::Display for Pred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pred::Layer(cmp, layer) => write!(f, "layer {cmp} {layer}"),
            Pred::LayerIn(layers) => {
                f.write_str("layer in (")?;
                for (i, l) in layers.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{l}")?;
                }
                f.write_str(")")
            }
            Pred::Follows => f.write_str("follows"),
            Pred::Subscribed => f.write_str("subscribed"),
            Pred::InGroup(None) => f.write_str("in_group"),
            Pred::InGroup(Some(group)) => write!(f, "in_group({})", Quoted(group)),
            Pred::Tag(tag) => write!(f, "tag({})", Quoted(tag)),
            Pred::Has(kind) => write!(f, "has({kind})"),
            Pred::Count { ty, window, cmp, n } => {
                write!(f, "count({ty}, {}) {cmp} {n}", Window(*window))
            }
            Pred::Sum {
                prop,
                window,
                cmp,
                x,
            } => write!(f, "sum({prop}, {}) {cmp} {x}", Window(*window)),
            Pred::Engagement(cmp, n) => write!(f, "engagement_30d {cmp} {n}"),
            Pred::Orders(cmp, n) => write!(f, "orders_180d {cmp} {n}"),
            Pred::Last { ty, window } => write!(f, "last({ty}) within {}", Window(*window)),
            Pred::FirstSeen { window } => write!(f, "first_seen within {}", Window(*window)),
            Pred::FirstDomain { eq, domain } => {
                write!(f, "first_domain {} {domain}", if *eq { "=" } else { "!=" })
            }
        }
    }
}

/// The canonical form: lowercase keywords, single spaces, parentheses only where precedence
/// needs them, windows in d/h/m. What the parser produces prints back to text that parses to
/// the same `Expr`. (An empty `And`/`Or`, which the parser never makes, prints as nothing.)
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Pred(p) => write!(f, "{p}"),
            Expr::Not(e) => {
                f.write_str("not ")?;
                operand(f, e, matches!(**e, Expr::And(_) | Expr::Or(_)))
            }
            Expr::And(items) => {
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    operand(f, e, matches!(e, Expr::And(_) | Expr::Or(_)))?;
                }
                Ok(())
            }
            Expr::Or(items) => {
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    operand(f, e, matches!(e, Expr::Or(_)))?;
                }
                Ok(())
            }
        }
    }
}

fn operand(f: &mut fmt::Formatter<'_>, e: &Expr, parens: bool) -> fmt::Result {
    if parens {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

// ---------------------------------------------------------------------------------------------
// Lexing. Errors become `Tok::Bad` tokens so that the parser reports the leftmost problem: a
// typo in the first word is reported before a stray character further on.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A name or keyword: starts with a letter (any script) or `_`; letters, digits, `_`, `.`.
    Word(String),
    /// Starts with a digit, or `-` and a digit: a number or a window, decided by the parser.
    Number(String),
    /// A quoted string, unescaped.
    Str(String),
    LParen,
    RParen,
    Comma,
    Star,
    Cmp(Cmp),
    /// `&&`
    AndOp,
    /// `||`
    OrOp,
    /// `!`
    NotOp,
    /// Something that is not a token; the message says what.
    Bad(String),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// 1-based, in characters.
    col: usize,
    /// As written.
    text: String,
}

fn lex(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let next = chars.get(i + 1).copied();
        let mut col = start + 1;
        let tok = match c {
            '(' | '（' => {
                i += 1;
                Tok::LParen
            }
            ')' | '）' => {
                i += 1;
                Tok::RParen
            }
            ',' | '，' | '、' => {
                i += 1;
                Tok::Comma
            }
            '*' => {
                i += 1;
                Tok::Star
            }
            '=' => {
                i += if next == Some('=') { 2 } else { 1 };
                Tok::Cmp(Cmp::Eq)
            }
            '!' if next == Some('=') => {
                i += 2;
                Tok::Cmp(Cmp::Ne)
            }
            '!' => {
                i += 1;
                Tok::NotOp
            }
            '<' if next == Some('=') => {
                i += 2;
                Tok::Cmp(Cmp::Le)
            }
            '<' => {
                i += 1;
                Tok::Cmp(Cmp::Lt)
            }
            '>' if next == Some('=') => {
                i += 2;
                Tok::Cmp(Cmp::Ge)
            }
            '>' => {
                i += 1;
                Tok::Cmp(Cmp::Gt)
            }
            '&' if next == Some('&') => {
                i += 2;
                Tok::AndOp
            }
            '|' if next == Some('|') => {
                i += 2;
                Tok::OrOp
            }
            '&' | '|' => {
                i += 1;
                Tok::Bad(format!(
                    "unexpected character \"{c}\"; write \"{c}{c}\" or \"{}\"",
                    if c == '&' { "and" } else { "or" }
                ))
            }
            '"' | '\'' | '“' | '‘' => match lex_string(&chars, &mut i) {
                Ok(s) => Tok::Str(s),
                Err((at, message)) => {
                    col = at + 1;
                    Tok::Bad(message)
                }
            },
            '-' if next.is_some_and(|d| d.is_ascii_digit()) => {
                i += 1;
                i = scan_word(&chars, i);
                Tok::Number(chars[start..i].iter().collect())
            }
            c if c.is_ascii_digit() => {
                i = scan_word(&chars, i);
                Tok::Number(chars[start..i].iter().collect())
            }
            c if c.is_alphabetic() || c == '_' => {
                i = scan_word(&chars, i);
                Tok::Word(chars[start..i].iter().collect())
            }
            c => {
                i += 1;
                Tok::Bad(format!("unexpected character \"{c}\""))
            }
        };
        let bad = matches!(tok, Tok::Bad(_));
        out.push(Token {
            tok,
            col,
            text: chars[start..i.min(chars.len())].iter().collect(),
        });
        if bad {
            // Nothing after the first bad character can be reached.
            break;
        }
    }
    out.push(Token {
        tok: Tok::End,
        col: chars.len() + 1,
        text: String::new(),
    });
    out
}

/// The end of a run of letters, digits, `_` and `.` starting at `i`.
fn scan_word(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
        i += 1;
    }
    i
}

/// Reads the string opening at `chars[*i]`; on error, the index to point at and why.
fn lex_string(chars: &[char], i: &mut usize) -> Result<String, (usize, String)> {
    let open = chars[*i];
    let close: &[char] = match open {
        '“' => &['”', '"'],
        '‘' => &['’', '\''],
        '"' => &['"'],
        _ => &['\''],
    };
    let start = *i;
    *i += 1;
    let mut s = String::new();
    while let Some(&c) = chars.get(*i) {
        *i += 1;
        if close.contains(&c) {
            return Ok(s);
        }
        if c == '\\' {
            match chars.get(*i) {
                Some(&e) if matches!(e, '"' | '\'' | '\\' | '“' | '”' | '‘' | '’') => {
                    s.push(e);
                    *i += 1;
                }
                Some(&e) => {
                    return Err((
                        *i - 1,
                        format!(
                            "unknown escape \"\\{e}\" in a string; only \\\", \\' and \\\\ are escapes"
                        ),
                    ));
                }
                None => break,
            }
        } else {
            s.push(c);
        }
    }
    Err((
        start,
        format!(
            "the string opened here is not closed; expected a closing {}",
            close[0]
        ),
    ))
}

// ---------------------------------------------------------------------------------------------
// Parsing: recursive descent, `or` < `and` < `not` < atoms.
// ---------------------------------------------------------------------------------------------

const TERMS: [&str; 13] = [
    "layer",
    "follows",
    "subscribed",
    "in_group",
    "tag",
    "has",
    "count",
    "sum",
    "engagement_30d",
    "orders_180d",
    "last",
    "first_seen",
    "first_domain",
];

const EXPECTED_TERM: &str = "layer, follows, subscribed, in_group, tag, has, count, sum, \
     engagement_30d, orders_180d, last, first_seen, first_domain, not or \"(\"";

const EXPECTED_CMP: &str = "a comparison (=, !=, <, <=, >, >=)";

struct Parser {
    /// Always ends with `Tok::End`.
    toks: Vec<Token>,
    pos: usize,
    /// Open parentheses and `not`s around the current position.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos]
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    /// The current token is the word `kw`, in any case.
    fn at_keyword(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    /// "expected X, found Y" at the current token.
    fn fail(&self, expected: &str) -> ParseError {
        let t = self.peek();
        match &t.tok {
            Tok::Bad(message) => error(t.col, message.clone()),
            Tok::End => error(
                t.col,
                format!("expected {expected} but the expression ended"),
            ),
            _ => error(t.col, format!("expected {expected}, found {}", describe(t))),
        }
    }

    fn expect(&mut self, want: Tok, expected: &str) -> Result<(), ParseError> {
        if self.peek().tok == want {
            self.bump();
            Ok(())
        } else {
            Err(self.fail(expected))
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(error(
                self.peek().col,
                format!("the expression nests parentheses and \"not\" more than {MAX_DEPTH} deep"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut items = Vec::new();
        push_flat(&mut items, self.and()?, |e| matches!(e, Expr::Or(_)));
        while self.peek().tok == Tok::OrOp || self.at_keyword("or") {
            self.bump();
            push_flat(&mut items, self.and()?, |e| matches!(e, Expr::Or(_)));
        }
        Ok(join(items, Expr::Or))
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut items = Vec::new();
        push_flat(&mut items, self.unary()?, |e| matches!(e, Expr::And(_)));
        while self.peek().tok == Tok::AndOp || self.at_keyword("and") {
            self.bump();
            push_flat(&mut items, self.unary()?, |e| matches!(e, Expr::And(_)));
        }
        Ok(join(items, Expr::And))
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.peek().tok == Tok::NotOp || self.at_keyword("not") {
            self.enter()?;
            self.bump();
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        if self.peek().tok == Tok::LParen {
            self.enter()?;
            self.bump();
            let e = self.or()?;
            match self.peek().tok {
                Tok::RParen => {
                    self.bump();
                }
                Tok::End => return Err(self.fail("\")\"")),
                _ => return Err(self.fail("\"and\", \"or\" or \")\"")),
            }
            self.depth -= 1;
            return Ok(e);
        }
        self.pred().map(Expr::Pred)
    }

    fn pred(&mut self) -> Result<Pred, ParseError> {
        let t = self.peek().clone();
        let Tok::Word(word) = &t.tok else {
            return Err(self.fail(EXPECTED_TERM));
        };
        let name = word.to_lowercase();
        if !TERMS.contains(&name.as_str()) {
            if matches!(name.as_str(), "and" | "or" | "in" | "within") {
                return Err(self.fail(EXPECTED_TERM));
            }
            let hint = if let Ok(layer) = name.parse::<Layer>() {
                format!("; did you mean \"layer = {layer}\"?")
            } else {
                did_you_mean(&name, TERMS)
            };
            return Err(error(
                t.col,
                format!(
                    "unknown term {}; expected {EXPECTED_TERM}{hint}",
                    quote(word)
                ),
            ));
        }
        self.bump();
        let after = |s: &str| format!("\"(\" after \"{s}\"");
        Ok(match name.as_str() {
            "layer" => {
                if self.at_keyword("in") {
                    self.bump();
                    self.expect(Tok::LParen, "\"(\" after \"layer in\"")?;
                    let mut layers = vec![self.layer()?];
                    loop {
                        match self.peek().tok {
                            Tok::Comma => {
                                self.bump();
                                layers.push(self.layer()?);
                            }
                            Tok::RParen => {
                                self.bump();
                                break;
                            }
                            _ => return Err(self.fail("\",\" or \")\" in the list of layers")),
                        }
                    }
                    Pred::LayerIn(layers)
                } else {
                    let Tok::Cmp(cmp) = self.peek().tok else {
                        return Err(self.fail(&format!("{EXPECTED_CMP} or \"in\" after \"layer\"")));
                    };
                    self.bump();
                    Pred::Layer(cmp, self.layer()?)
                }
            }
            "follows" => Pred::Follows,
            "subscribed" => Pred::Subscribed,
            "in_group" => {
                if self.peek().tok == Tok::LParen {
                    self.bump();
                    let group =
                        self.string("a quoted group id, e.g. in_group(\"g1\")", "group id")?;
                    self.expect(Tok::RParen, "\")\" after the group id")?;
                    Pred::InGroup(Some(group))
                } else {
                    Pred::InGroup(None)
                }
            }
            "tag" => {
                self.expect(Tok::LParen, &after("tag"))?;
                let tag = self.string("a quoted tag name, e.g. tag(\"高意向\")", "tag name")?;
                self.expect(Tok::RParen, "\")\" after the tag name")?;
                Pred::Tag(tag)
            }
            "has" => {
                self.expect(Tok::LParen, &after("has"))?;
                let kind = self.identity_kind()?;
                self.expect(Tok::RParen, "\")\" after the identity kind")?;
                Pred::Has(kind)
            }
            "count" => {
                self.expect(Tok::LParen, &after("count"))?;
                let ty = self.type_sel()?;
                self.expect(Tok::Comma, "\",\" after the event type")?;
                let window = self.window()?;
                self.expect(Tok::RParen, "\")\" after the window")?;
                let cmp = self.cmp("count(…)")?;
                let n = self.number()?;
                Pred::Count { ty, window, cmp, n }
            }
            "sum" => {
                self.expect(Tok::LParen, &after("sum"))?;
                let prop = self.sum_prop()?;
                self.expect(Tok::Comma, "\",\" after the property")?;
                let window = self.window()?;
                self.expect(Tok::RParen, "\")\" after the window")?;
                let cmp = self.cmp("sum(…)")?;
                let x = self.number()?;
                Pred::Sum {
                    prop,
                    window,
                    cmp,
                    x,
                }
            }
            "engagement_30d" => {
                let cmp = self.cmp("engagement_30d")?;
                Pred::Engagement(cmp, self.number()?)
            }
            "orders_180d" => {
                let cmp = self.cmp("orders_180d")?;
                Pred::Orders(cmp, self.number()?)
            }
            "last" => {
                self.expect(Tok::LParen, &after("last"))?;
                let ty = self.type_sel()?;
                self.expect(Tok::RParen, "\")\" after the event type")?;
                self.within("last(…)")?;
                Pred::Last {
                    ty,
                    window: self.window()?,
                }
            }
            "first_seen" => {
                self.within("first_seen")?;
                Pred::FirstSeen {
                    window: self.window()?,
                }
            }
            _ => {
                // first_domain
                let t = self.peek().clone();
                let eq = match t.tok {
                    Tok::Cmp(Cmp::Eq) => true,
                    Tok::Cmp(Cmp::Ne) => false,
                    Tok::Cmp(other) => {
                        return Err(error(
                            t.col,
                            format!(
                                "first_domain can only be compared with = or !=, found \"{other}\""
                            ),
                        ));
                    }
                    _ => return Err(self.fail("\"=\" or \"!=\" after \"first_domain\"")),
                };
                self.bump();
                Pred::FirstDomain {
                    eq,
                    domain: self.domain()?,
                }
            }
        })
    }

    fn cmp(&mut self, after: &str) -> Result<Cmp, ParseError> {
        match self.peek().tok {
            Tok::Cmp(c) => {
                self.bump();
                Ok(c)
            }
            _ => Err(self.fail(&format!("{EXPECTED_CMP} after {after}"))),
        }
    }

    fn within(&mut self, after: &str) -> Result<(), ParseError> {
        if self.at_keyword("within") {
            self.bump();
            Ok(())
        } else {
            Err(self.fail(&format!("\"within\" after {after}")))
        }
    }

    fn string(&mut self, expected: &str, what: &str) -> Result<String, ParseError> {
        let t = self.peek().clone();
        let Tok::Str(s) = t.tok else {
            return Err(self.fail(expected));
        };
        if s.trim().is_empty() {
            return Err(error(t.col, format!("the {what} is empty")));
        }
        self.bump();
        Ok(s)
    }

    fn layer(&mut self) -> Result<Layer, ParseError> {
        const EXPECTED: &str =
            "potential, passerby, favorable, true_love (or 潜在粉丝, 路人粉丝, 好感粉丝, 真爱粉丝)";
        let t = self.peek().clone();
        let Tok::Word(word) = &t.tok else {
            return Err(self.fail(&format!("a layer: {EXPECTED}")));
        };
        let name = word.to_lowercase();
        let layer = name.parse::<Layer>().map_err(|()| {
            let names = Layer::ALL.iter().flat_map(|l| [l.as_str(), l.label_zh()]);
            error(
                t.col,
                format!(
                    "unknown layer {}; expected {EXPECTED}{}",
                    quote(word),
                    did_you_mean(&name, names)
                ),
            )
        })?;
        self.bump();
        Ok(layer)
    }

    fn domain(&mut self) -> Result<Domain, ParseError> {
        const EXPECTED: &str = "public, commercial, private (or 公域, 商域, 私域)";
        let t = self.peek().clone();
        let Tok::Word(word) = &t.tok else {
            return Err(self.fail(&format!("a domain: {EXPECTED}")));
        };
        let name = word.to_lowercase();
        let domain = name.parse::<Domain>().map_err(|()| {
            let names = Domain::ALL.iter().flat_map(|d| [d.as_str(), d.label_zh()]);
            error(
                t.col,
                format!(
                    "unknown domain {}; expected {EXPECTED}{}",
                    quote(word),
                    did_you_mean(&name, names)
                ),
            )
        })?;
        self.bump();
        Ok(domain)
    }

    fn identity_kind(&mut self) -> Result<IdentityKind, ParseError> {
        let kinds = || IdentityKind::ALL.iter().map(|k| k.as_str());
        let expected = kinds().collect::<Vec<_>>().join(", ");
        let t = self.peek().clone();
        let Tok::Word(word) = &t.tok else {
            return Err(self.fail(&format!("an identity kind: {expected}")));
        };
        let name = word.to_lowercase();
        let kind = name.parse::<IdentityKind>().map_err(|()| {
            error(
                t.col,
                format!(
                    "unknown identity kind {}; expected {expected}{}",
                    quote(word),
                    did_you_mean(&name, kinds())
                ),
            )
        })?;
        self.bump();
        Ok(kind)
    }

    /// `*`, a catalogue type or a custom `x_…` type.
    fn type_sel(&mut self) -> Result<TypeSel, ParseError> {
        let t = self.peek().clone();
        let sel = match &t.tok {
            Tok::Star => TypeSel::Any,
            Tok::Word(word) => resolve_type(word, t.col, true)?,
            _ => {
                return Err(self.fail(
                    "an event type (a catalogue type such as order, x_NAME for a custom type, or \"*\")",
                ));
            }
        };
        self.bump();
        Ok(sel)
    }

    /// `TYPE.PROP`, one of [`SumProp::ALL`].
    fn sum_prop(&mut self) -> Result<SumProp, ParseError> {
        let t = self.peek().clone();
        let word = match &t.tok {
            Tok::Word(word) => word.clone(),
            Tok::Star => "*".to_string(),
            _ => return Err(self.fail(&format!("a property to sum: {}", summable()))),
        };
        let ty = word.split('.').next().unwrap_or_default();
        if ty != "*" {
            resolve_type(ty, t.col, false)?;
        }
        let lower = word.to_lowercase();
        let prop = SumProp::ALL
            .into_iter()
            .find(|p| p.as_str() == lower)
            .ok_or_else(|| {
                error(
                    t.col,
                    format!(
                        "{} cannot be summed; summable: {}",
                        quote(&word),
                        summable()
                    ),
                )
            })?;
        self.bump();
        Ok(prop)
    }

    fn number(&mut self) -> Result<f64, ParseError> {
        let t = self.peek().clone();
        let Tok::Number(text) = &t.tok else {
            return Err(self.fail("a number"));
        };
        if text.starts_with('-') {
            return Err(error(
                t.col,
                format!("expected a number ≥ 0, found {}", quote(text)),
            ));
        }
        let (int, frac) = match text.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (text.as_str(), None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || !frac.is_none_or(digits) {
            return Err(error(
                t.col,
                format!("expected a number, found {}", quote(text)),
            ));
        }
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => {
                self.bump();
                Ok(n)
            }
            _ => Err(error(
                t.col,
                format!("the number {} is too large", quote(text)),
            )),
        }
    }

    /// An integer and a unit: `30m`, `24h`, `7d`, `2w`.
    fn window(&mut self) -> Result<Millis, ParseError> {
        const EXPECTED: &str = "a window such as 7d or 24h (m, h, d or w)";
        let t = self.peek().clone();
        let Tok::Number(text) = &t.tok else {
            return Err(self.fail(EXPECTED));
        };
        let fail = |message: String| Err(error(t.col, message));
        if text.starts_with('-') {
            return fail(format!("expected {EXPECTED}, found {}", quote(text)));
        }
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        if unit.is_empty() {
            return fail(format!(
                "the window {} has no unit; expected m, h, d or w (e.g. 7d)",
                quote(text)
            ));
        }
        if unit.starts_with('.') {
            return fail(format!(
                "the window {} is not a whole number; write e.g. 36h instead of 1.5d",
                quote(text)
            ));
        }
        let unit_ms = match unit.to_lowercase().as_str() {
            "m" => MS_PER_MINUTE,
            "h" => MS_PER_HOUR,
            "d" => MS_PER_DAY,
            "w" => 7 * MS_PER_DAY,
            _ => {
                return fail(format!(
                    "unknown window unit {} in {}; expected m, h, d or w",
                    quote(unit),
                    quote(text)
                ));
            }
        };
        let too_long = || format!("the window {} is longer than 10 years (3650d)", quote(text));
        let Ok(n) = digits.parse::<i64>() else {
            return fail(too_long());
        };
        if n == 0 {
            return fail(format!(
                "the window {} is empty; it must be at least 1m",
                quote(text)
            ));
        }
        match n.checked_mul(unit_ms) {
            Some(ms) if ms <= MAX_WINDOW => {
                self.bump();
                Ok(ms)
            }
            _ => fail(too_long()),
        }
    }
}

/// Adds `e` to a chain, splicing in its items if it is the same kind of chain.
fn push_flat(items: &mut Vec<Expr>, e: Expr, same: impl Fn(&Expr) -> bool) {
    if same(&e) {
        match e {
            Expr::And(inner) | Expr::Or(inner) => items.extend(inner),
            other => items.push(other),
        }
    } else {
        items.push(e);
    }
}

/// One item is itself; more are a chain.
fn join(mut items: Vec<Expr>, chain: fn(Vec<Expr>) -> Expr) -> Expr {
    if items.len() == 1 {
        items.pop().expect("one item")
    } else {
        chain(items)
    }
}

/// A type name as written: catalogue names in any case, `x_` + a valid custom name, else an
/// error at `col` (with "*" in what is expected if `star`).
fn resolve_type(word: &str, col: usize, star: bool) -> Result<TypeSel, ParseError> {
    if let Some(rest) = word.strip_prefix("x_").or_else(|| word.strip_prefix("X_")) {
        return match CustomName::parse(rest) {
            Some(name) => Ok(TypeSel::Custom(format!("x_{}", name.as_str()))),
            None => Err(error(
                col,
                format!(
                    "invalid custom event type {}; expected x_ followed by 1 to {} letters, digits or _",
                    quote(word),
                    CustomName::MAX_CHARS
                ),
            )),
        };
    }
    let lower = word.to_lowercase();
    if let Ok(TypeName::Catalogue(t)) = lower.parse::<TypeName>() {
        return Ok(TypeSel::Catalogue(t));
    }
    let names = CatalogueType::ALL.iter().map(|t| t.as_str());
    let hint = did_you_mean(&lower, names.clone());
    let message = if hint.is_empty() {
        let list = names.collect::<Vec<_>>().join(", ");
        let star = if star { ", or \"*\" for any" } else { "" };
        format!(
            "unknown event type {}; expected a catalogue type ({list}), x_NAME for a custom type{star}",
            quote(word)
        )
    } else {
        format!("unknown event type {}{hint}", quote(word))
    };
    Err(error(col, message))
}

fn summable() -> String {
    SumProp::ALL.map(SumProp::as_str).join(", ")
}

/// `"word"`, shortened if long.
fn quote(s: &str) -> String {
    format!("\"{}\"", shorten(s))
}

/// At most 40 characters: an error message is not the place to echo 10,000 of them.
fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() > MAX {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    } else {
        s.to_string()
    }
}

/// How the parser names the token it found.
fn describe(t: &Token) -> String {
    match t.tok {
        Tok::Str(_) => format!("the string {}", shorten(&t.text)),
        _ => quote(&t.text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: Millis = MS_PER_DAY;

    fn p(text: &str) -> Expr {
        parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn pred(text: &str) -> Pred {
        match p(text) {
            Expr::Pred(pr) => pr,
            other => panic!("{text:?} is not one predicate: {other:?}"),
        }
    }

    /// The error as printed: `column N: message`.
    fn err(text: &str) -> String {
        match parse(text) {
            Ok(e) => panic!("{text:?} parsed as {e:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn count(ty: TypeSel, days: i64, cmp: Cmp, n: f64) -> Pred {
        Pred::Count {
            ty,
            window: days * DAY,
            cmp,
            n,
        }
    }

    fn leaf(text: &str) -> Expr {
        Expr::Pred(pred(text))
    }

    #[test]
    fn layer_comparisons_with_every_operator_and_every_name() {
        use Layer::*;
        for (op, cmp) in [
            ("=", Cmp::Eq),
            ("==", Cmp::Eq),
            ("!=", Cmp::Ne),
            ("<", Cmp::Lt),
            ("<=", Cmp::Le),
            (">", Cmp::Gt),
            (">=", Cmp::Ge),
        ] {
            for (name, layer) in [
                ("potential", Potential),
                ("passerby", Passerby),
                ("favorable", Favorable),
                ("true_love", TrueLove),
                ("潜在粉丝", Potential),
                ("潜在", Potential),
                ("路人粉丝", Passerby),
                ("路人", Passerby),
                ("好感粉丝", Favorable),
                ("好感", Favorable),
                ("真爱粉丝", TrueLove),
                ("真爱", TrueLove),
                ("TRUE_LOVE", TrueLove),
            ] {
                assert_eq!(pred(&format!("layer {op} {name}")), Pred::Layer(cmp, layer));
                assert_eq!(pred(&format!("layer{op}{name}")), Pred::Layer(cmp, layer));
            }
        }
        assert_eq!(
            pred("layer in (passerby, favorable)"),
            Pred::LayerIn(vec![Passerby, Favorable])
        );
        assert_eq!(
            pred("Layer IN（路人粉丝，真爱、潜在）"),
            Pred::LayerIn(vec![Passerby, TrueLove, Potential])
        );
        assert_eq!(pred("layer in (好感)"), Pred::LayerIn(vec![Favorable]));
    }

    #[test]
    fn state_predicates() {
        assert_eq!(pred("follows"), Pred::Follows);
        assert_eq!(pred("FOLLOWS"), Pred::Follows);
        assert_eq!(pred("subscribed"), Pred::Subscribed);
        assert_eq!(pred("in_group"), Pred::InGroup(None));
        assert_eq!(pred("in_group(\"g1\")"), Pred::InGroup(Some("g1".into())));
        assert_eq!(pred("in_group('g 1')"), Pred::InGroup(Some("g 1".into())));
        assert_eq!(
            pred("in_group（“粉丝群”）"),
            Pred::InGroup(Some("粉丝群".into()))
        );
        assert_eq!(pred("tag(\"高意向\")"), Pred::Tag("高意向".into()));
        assert_eq!(pred("tag(“高意向”)"), Pred::Tag("高意向".into()));
        assert_eq!(pred("tag(‘高意向’)"), Pred::Tag("高意向".into()));
        assert_eq!(pred(r#"tag("a\"b\\c")"#), Pred::Tag("a\"b\\c".into()));
        assert_eq!(pred(r"tag('it\'s')"), Pred::Tag("it's".into()));
        for k in IdentityKind::ALL {
            assert_eq!(pred(&format!("has({k})")), Pred::Has(*k));
        }
        assert_eq!(pred("has( PHONE )"), Pred::Has(IdentityKind::Phone));
    }

    #[test]
    fn counts_and_sums() {
        use crate::event_type::CatalogueType::*;
        assert_eq!(
            pred("count(live_watch, 7d) >= 2"),
            count(TypeSel::Catalogue(LiveWatch), 7, Cmp::Ge, 2.0)
        );
        assert_eq!(
            pred("count(*, 24h) = 0"),
            Pred::Count {
                ty: TypeSel::Any,
                window: DAY,
                cmp: Cmp::Eq,
                n: 0.0
            }
        );
        assert_eq!(
            pred("count(x_领券, 2w) < 1.5"),
            count(TypeSel::Custom("x_领券".into()), 14, Cmp::Lt, 1.5)
        );
        assert_eq!(
            pred("COUNT（Order，180d）!= 3"),
            count(TypeSel::Catalogue(Order), 180, Cmp::Ne, 3.0)
        );
        assert_eq!(
            pred("sum(order.amount, 30d) > 499.5"),
            Pred::Sum {
                prop: SumProp::OrderAmount,
                window: 30 * DAY,
                cmp: Cmp::Gt,
                x: 499.5
            }
        );
        assert_eq!(
            pred("sum(refund.amount, 90m) <= 0"),
            Pred::Sum {
                prop: SumProp::RefundAmount,
                window: 90 * 60_000,
                cmp: Cmp::Le,
                x: 0.0
            }
        );
        assert_eq!(
            pred("sum(live_watch.duration_s, 1d) >= 3600"),
            Pred::Sum {
                prop: SumProp::LiveWatchSeconds,
                window: DAY,
                cmp: Cmp::Ge,
                x: 3600.0
            }
        );
        assert_eq!(
            pred("engagement_30d >= 10"),
            Pred::Engagement(Cmp::Ge, 10.0)
        );
        assert_eq!(pred("orders_180d > 0"), Pred::Orders(Cmp::Gt, 0.0));
    }

    #[test]
    fn recency_and_first_touch() {
        assert_eq!(
            pred("last(order) within 7d"),
            Pred::Last {
                ty: TypeSel::Catalogue(CatalogueType::Order),
                window: 7 * DAY
            }
        );
        assert_eq!(
            pred("last(*) WITHIN 3h"),
            Pred::Last {
                ty: TypeSel::Any,
                window: 3 * 3_600_000
            }
        );
        assert_eq!(
            pred("first_seen within 1w"),
            Pred::FirstSeen { window: 7 * DAY }
        );
        assert_eq!(
            pred("first_domain = commercial"),
            Pred::FirstDomain {
                eq: true,
                domain: Domain::Commercial
            }
        );
        for (name, domain) in [
            ("公域", Domain::Public),
            ("商域", Domain::Commercial),
            ("私域", Domain::Private),
            ("PRIVATE", Domain::Private),
        ] {
            assert_eq!(
                pred(&format!("first_domain != {name}")),
                Pred::FirstDomain { eq: false, domain }
            );
        }
    }

    #[test]
    fn windows() {
        let w = |s: &str| match pred(&format!("first_seen within {s}")) {
            Pred::FirstSeen { window } => window,
            other => panic!("{other:?}"),
        };
        assert_eq!(w("1m"), 60_000);
        assert_eq!(w("24h"), DAY);
        assert_eq!(w("7D"), 7 * DAY);
        assert_eq!(w("2w"), 14 * DAY);
        assert_eq!(w("3650d"), MAX_WINDOW);
        assert_eq!(w("521w"), 521 * 7 * DAY);
        let e = |s: &str| err(&format!("first_seen within {s}"));
        assert_eq!(
            e("7y"),
            "column 19: unknown window unit \"y\" in \"7y\"; expected m, h, d or w"
        );
        assert_eq!(
            e("0d"),
            "column 19: the window \"0d\" is empty; it must be at least 1m"
        );
        assert_eq!(
            e("3651d"),
            "column 19: the window \"3651d\" is longer than 10 years (3650d)"
        );
        assert_eq!(
            e("99999999999999999999w"),
            "column 19: the window \"99999999999999999999w\" is longer than 10 years (3650d)"
        );
        assert_eq!(
            e("7"),
            "column 19: the window \"7\" has no unit; expected m, h, d or w (e.g. 7d)"
        );
        assert_eq!(
            e("d"),
            "column 19: expected a window such as 7d or 24h (m, h, d or w), found \"d\""
        );
        assert_eq!(
            e("1.5d"),
            "column 19: the window \"1.5d\" is not a whole number; write e.g. 36h instead of 1.5d"
        );
        assert_eq!(
            e("-7d"),
            "column 19: expected a window such as 7d or 24h (m, h, d or w), found \"-7d\""
        );
        assert_eq!(
            e(""),
            "column 19: expected a window such as 7d or 24h (m, h, d or w) but the expression ended"
        );
    }

    #[test]
    fn precedence_is_not_then_and_then_or_and_chains_are_flat() {
        let (a, b, c, d) = (
            leaf("follows"),
            leaf("subscribed"),
            leaf("in_group"),
            leaf("tag('t')"),
        );
        let not = |e: &Expr| Expr::Not(Box::new(e.clone()));
        assert_eq!(
            p("follows and subscribed and in_group"),
            Expr::And(vec![a.clone(), b.clone(), c.clone()])
        );
        assert_eq!(
            p("follows or subscribed and in_group"),
            Expr::Or(vec![a.clone(), Expr::And(vec![b.clone(), c.clone()])])
        );
        assert_eq!(
            p("follows and subscribed or in_group and tag('t')"),
            Expr::Or(vec![
                Expr::And(vec![a.clone(), b.clone()]),
                Expr::And(vec![c.clone(), d.clone()])
            ])
        );
        assert_eq!(
            p("not follows and subscribed"),
            Expr::And(vec![not(&a), b.clone()])
        );
        assert_eq!(
            p("not (follows and subscribed)"),
            not(&Expr::And(vec![a.clone(), b.clone()]))
        );
        assert_eq!(
            p("(follows and subscribed) and (in_group and tag('t'))"),
            Expr::And(vec![a.clone(), b.clone(), c.clone(), d.clone()])
        );
        assert_eq!(
            p("follows or (subscribed or (in_group))"),
            Expr::Or(vec![a.clone(), b.clone(), c.clone()])
        );
        assert_eq!(
            p("(follows or subscribed) and in_group"),
            Expr::And(vec![Expr::Or(vec![a.clone(), b.clone()]), c.clone()])
        );
        assert_eq!(p("((follows))"), a);
        assert_eq!(p("not not follows"), not(&not(&a)));
        assert_eq!(
            p("!follows && subscribed || in_group"),
            p("not follows and subscribed or in_group")
        );
        assert_eq!(
            p("NOT follows AND subscribed Or in_group"),
            p("not follows and subscribed or in_group")
        );
        assert_eq!(p("!(follows)"), not(&a));
        assert_eq!(
            p("\u{3000}follows\u{3000}and\tsubscribed\n"),
            Expr::And(vec![a, b])
        );
    }

    #[test]
    fn the_example_from_the_docs() {
        use crate::event_type::CatalogueType::*;
        let e = p("layer = favorable and count(live_watch, 7d) >= 2 and not count(order, 7d) > 0");
        assert_eq!(
            e,
            Expr::And(vec![
                Expr::Pred(Pred::Layer(Cmp::Eq, Layer::Favorable)),
                Expr::Pred(count(TypeSel::Catalogue(LiveWatch), 7, Cmp::Ge, 2.0)),
                Expr::Not(Box::new(Expr::Pred(count(
                    TypeSel::Catalogue(Order),
                    7,
                    Cmp::Gt,
                    0.0
                )))),
            ])
        );
        assert_eq!(e.preds().len(), 3);
        assert_eq!(
            e.to_string(),
            "layer = favorable and count(live_watch, 7d) >= 2 and not count(order, 7d) > 0"
        );
        assert_eq!(
            "好感 <= layer".parse::<Expr>().map_err(|e| e.column),
            Err(1)
        );
    }

    #[test]
    fn preds_lists_every_leaf_in_order() {
        let e = p("follows and (tag('a') or not has(phone)) and follows");
        assert_eq!(
            e.preds(),
            vec![
                &Pred::Follows,
                &Pred::Tag("a".into()),
                &Pred::Has(IdentityKind::Phone),
                &Pred::Follows
            ]
        );
    }

    #[test]
    fn canonical_form() {
        for (text, canonical) in [
            ("LAYER>=好感", "layer >= favorable"),
            ("layer in（路人，真爱）", "layer in (passerby, true_love)"),
            ("count(Order,168h)>=1.50", "count(order, 7d) >= 1.5"),
            ("count(*, 90m) = 007", "count(*, 90m) = 7"),
            ("tag(“高意向”)", "tag(\"高意向\")"),
            (r#"in_group('a"b')"#, r#"in_group("a\"b")"#),
            ("first_domain != 商域", "first_domain != commercial"),
            ("last(X_signup) within 2w", "last(x_signup) within 14d"),
            (
                "!(follows || subscribed) && (in_group || has(email))",
                "not (follows or subscribed) and (in_group or has(email))",
            ),
            ("not not (follows)", "not not follows"),
            (
                "layer in（路人粉丝，好感）and tag(“高意向”) and first_domain = 商域",
                "layer in (passerby, favorable) and tag(\"高意向\") and first_domain = commercial",
            ),
        ] {
            let e = p(text);
            assert_eq!(e.to_string(), canonical, "{text}");
            assert_eq!(p(canonical), e);
        }
    }

    #[test]
    fn errors_name_the_column_and_what_was_expected() {
        for (text, message) in [
            (
                "count(ordr, 7d) > 0",
                "column 7: unknown event type \"ordr\"; did you mean \"order\"?",
            ),
            (
                "last(live_wach) within 1d",
                "column 6: unknown event type \"live_wach\"; did you mean \"live_watch\"?",
            ),
            (
                "layr = favorable",
                "column 1: unknown term \"layr\"; expected layer, follows, subscribed, in_group, \
                 tag, has, count, sum, engagement_30d, orders_180d, last, first_seen, \
                 first_domain, not or \"(\"; did you mean \"layer\"?",
            ),
            (
                "follows and folows",
                "column 13: unknown term \"folows\"; expected layer, follows, subscribed, \
                 in_group, tag, has, count, sum, engagement_30d, orders_180d, last, first_seen, \
                 first_domain, not or \"(\"; did you mean \"follows\"?",
            ),
            (
                "favorable",
                "column 1: unknown term \"favorable\"; expected layer, follows, subscribed, \
                 in_group, tag, has, count, sum, engagement_30d, orders_180d, last, first_seen, \
                 first_domain, not or \"(\"; did you mean \"layer = favorable\"?",
            ),
            (
                "count(order, 7y) > 0",
                "column 14: unknown window unit \"y\" in \"7y\"; expected m, h, d or w",
            ),
            (
                "layer = favorite",
                "column 9: unknown layer \"favorite\"; expected potential, passerby, favorable, \
                 true_love (or 潜在粉丝, 路人粉丝, 好感粉丝, 真爱粉丝)",
            ),
            (
                "layer = passerbye",
                "column 9: unknown layer \"passerbye\"; expected potential, passerby, favorable, \
                 true_love (or 潜在粉丝, 路人粉丝, 好感粉丝, 真爱粉丝); did you mean \"passerby\"?",
            ),
            (
                "layer = 好感粉",
                "column 9: unknown layer \"好感粉\"; expected potential, passerby, favorable, \
                 true_love (or 潜在粉丝, 路人粉丝, 好感粉丝, 真爱粉丝); did you mean \"好感粉丝\"?",
            ),
            (
                "follows and (subscribed or",
                "column 27: expected layer, follows, subscribed, in_group, tag, has, count, sum, \
                 engagement_30d, orders_180d, last, first_seen, first_domain, not or \"(\" but the \
                 expression ended",
            ),
            (
                "follows and (subscribed or tag('a')",
                "column 36: expected \")\" but the expression ended",
            ),
            (
                "(follows and subscribed) or in_group)",
                "column 37: found \")\" with no \"(\" open; expected \"and\", \"or\" or the end",
            ),
            (
                "(follows subscribed)",
                "column 10: expected \"and\", \"or\" or \")\", found \"subscribed\"",
            ),
            (
                "sum(order.price, 30d) > 0",
                "column 5: \"order.price\" cannot be summed; summable: order.amount, \
                 refund.amount, live_watch.duration_s",
            ),
            (
                "sum(order, 30d) > 0",
                "column 5: \"order\" cannot be summed; summable: order.amount, refund.amount, \
                 live_watch.duration_s",
            ),
            (
                "sum(*, 30d) > 0",
                "column 5: \"*\" cannot be summed; summable: order.amount, refund.amount, \
                 live_watch.duration_s",
            ),
            (
                "sum(ordr.amount, 30d) > 0",
                "column 5: unknown event type \"ordr\"; did you mean \"order\"?",
            ),
            (
                "has(phon)",
                "column 5: unknown identity kind \"phon\"; expected douyin_open_id, \
                 douyin_union_id, wecom_external_id, wechat_union_id, phone, email, lead_id, \
                 user_id, anonymous_id; did you mean \"phone\"?",
            ),
            (
                "first_domain = 私",
                "column 16: unknown domain \"私\"; expected public, commercial, private (or 公域, \
                 商域, 私域)",
            ),
            (
                "first_domain = comercial",
                "column 16: unknown domain \"comercial\"; expected public, commercial, private \
                 (or 公域, 商域, 私域); did you mean \"commercial\"?",
            ),
            (
                "first_domain > public",
                "column 14: first_domain can only be compared with = or !=, found \">\"",
            ),
            (
                "follows subscribed",
                "column 9: expected \"and\", \"or\" or the end, found \"subscribed\"",
            ),
            (
                "layer favorable",
                "column 7: expected a comparison (=, !=, <, <=, >, >=) or \"in\" after \"layer\", \
                 found \"favorable\"",
            ),
            (
                "count(order, 7d) 2",
                "column 18: expected a comparison (=, !=, <, <=, >, >=) after count(…), found \"2\"",
            ),
            (
                "engagement_30d >= -1",
                "column 19: expected a number ≥ 0, found \"-1\"",
            ),
            (
                "orders_180d >= many",
                "column 16: expected a number, found \"many\"",
            ),
            (
                "orders_180d >= 1.2.3",
                "column 16: expected a number, found \"1.2.3\"",
            ),
            (
                "engagement_30d >=",
                "column 18: expected a number but the expression ended",
            ),
            ("tag(\"\")", "column 5: the tag name is empty"),
            ("in_group(' ')", "column 10: the group id is empty"),
            (
                "tag(高意向)",
                "column 5: expected a quoted tag name, e.g. tag(\"高意向\"), found \"高意向\"",
            ),
            (
                "tag(\"高意向)",
                "column 5: the string opened here is not closed; expected a closing \"",
            ),
            (
                r#"tag("a\nb")"#,
                "column 7: unknown escape \"\\n\" in a string; only \\\", \\' and \\\\ are escapes",
            ),
            (
                "count(x_, 7d) > 0",
                "column 7: invalid custom event type \"x_\"; expected x_ followed by 1 to 64 \
                 letters, digits or _",
            ),
            (
                "count(order 7d) > 0",
                "column 13: expected \",\" after the event type, found \"7d\"",
            ),
            (
                "last(order) 7d",
                "column 13: expected \"within\" after last(…), found \"7d\"",
            ),
            (
                "layer in (passerby favorable)",
                "column 20: expected \",\" or \")\" in the list of layers, found \"favorable\"",
            ),
            (
                "layer in ()",
                "column 11: expected a layer: potential, passerby, favorable, true_love (or \
                 潜在粉丝, 路人粉丝, 好感粉丝, 真爱粉丝), found \")\"",
            ),
            (
                "follows & subscribed",
                "column 9: unexpected character \"&\"; write \"&&\" or \"and\"",
            ),
            ("follows @", "column 9: unexpected character \"@\""),
            (
                "and follows",
                "column 1: expected layer, follows, subscribed, in_group, tag, has, count, sum, \
                 engagement_30d, orders_180d, last, first_seen, first_domain, not or \"(\", found \
                 \"and\"",
            ),
            (
                "",
                "column 1: the expression is empty; expected a condition such as layer = favorable",
            ),
            (
                " \u{3000} ",
                "column 1: the expression is empty; expected a condition such as layer = favorable",
            ),
            (
                "count(fooo, 7d) > 0",
                "column 7: unknown event type \"fooo\"; expected a catalogue type (video_view, \
                 video_like, video_comment, video_share, homepage_visit, live_enter, live_watch, \
                 live_comment, follow, unfollow, ad_impression, ad_click, lead_form, \
                 private_message_in, private_message_out, subscribe, unsubscribe, group_join, \
                 group_leave, group_message, coupon_claim, order, refund, store_visit), x_NAME \
                 for a custom type, or \"*\" for any",
            ),
        ] {
            assert_eq!(err(text), message, "{text}");
        }
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        // 好感 is 2 characters (6 bytes); full-width space is one.
        assert_eq!(
            err("layer = 好感\u{3000}and layr = 真爱"),
            format!(
                "column 16: unknown term \"layr\"; expected {EXPECTED_TERM}; did you mean \"layer\"?"
            )
        );
        let e = parse("tag(“高意向”) and has(phonee)").unwrap_err();
        assert_eq!(e.column, 20);
        // The caret sits under `phonee`: 19 characters before it, the three wide ones padded
        // with full-width spaces (3 bytes each), the rest with ASCII spaces.
        let pointer = e.pointer("tag(“高意向”) and has(phonee)");
        let caret_line = pointer.lines().nth(1).unwrap();
        assert_eq!(caret_line.find('^'), Some(16 + 3 * 3));
        assert!(caret_line.ends_with(
            "^ column 20: unknown identity kind \"phonee\"; expected \
             douyin_open_id, douyin_union_id, wecom_external_id, wechat_union_id, phone, email, \
             lead_id, user_id, anonymous_id; did you mean \"phone\"?"
        ));
    }

    #[test]
    fn length_and_depth_are_capped() {
        let long = format!("follows{}", " ".repeat(MAX_CHARS));
        assert_eq!(
            err(&long),
            "column 10001: the expression is longer than 10000 characters"
        );
        let ok = format!("{}follows{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(p(&ok), Expr::Pred(Pred::Follows));
        let deep = format!(
            "{}follows{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(
            err(&deep),
            "column 65: the expression nests parentheses and \"not\" more than 64 deep"
        );
        let nots = format!("{}follows", "not ".repeat(MAX_DEPTH + 1));
        assert_eq!(parse(&nots).unwrap_err().column, 4 * MAX_DEPTH + 1);
        let bangs = format!("{}follows", "!".repeat(5000));
        assert!(parse(&bangs).is_err());
    }

    #[test]
    fn mutated_expressions_never_panic() {
        let seeds = [
            "layer = favorable and count(live_watch, 7d) >= 2 and not count(order, 7d) > 0",
            "layer in (路人粉丝，好感) or tag(“高意向”) || !has(phone)",
            "sum(order.amount, 30d) > 499.5 and last(*) within 24h",
            "first_domain != 商域 and first_seen within 2w and in_group('g\\'1')",
            "(engagement_30d >= 10 or orders_180d > 0) and count(x_领券, 90m) = 0",
        ];
        let inserts = [
            "(", ")", "（", "）", ",", "，", "\"", "'", "“", "”", "\\", "=", "!", "<", ">", "&",
            "|", "*", ".", "-", "0", "9", "d", "y", "x_", " ", "\u{3000}", "not", "and", "in",
            "好", "é", "\u{0301}", "😀",
        ];
        let mut runs = 0;
        for seed in seeds {
            let chars: Vec<char> = seed.chars().collect();
            for i in 0..=chars.len() {
                // Cut here, delete one character here, insert each fragment here.
                let before: String = chars[..i].iter().collect();
                let after: String = chars[i..].iter().collect();
                let rest: String = chars.get(i + 1..).unwrap_or_default().iter().collect();
                let _ = parse(&before);
                let _ = parse(&after);
                let _ = parse(&format!("{before}{rest}"));
                for ins in inserts {
                    let _ = parse(&format!("{before}{ins}{after}"));
                    let _ = parse(&format!("{before}{ins}{rest}"));
                    runs += 5;
                }
            }
        }
        assert!(runs > 10_000);
    }

    fn arb_window() -> impl Strategy<Value = Millis> {
        prop_oneof![
            (1i64..=3650).prop_map(|d| d * MS_PER_DAY),
            (1i64..=3650 * 24).prop_map(|h| h * MS_PER_HOUR),
            (1i64..=3650 * 24 * 60).prop_map(|m| m * MS_PER_MINUTE),
        ]
    }

    fn arb_number() -> impl Strategy<Value = f64> {
        prop_oneof![
            (0u32..1000).prop_map(f64::from),
            0.0f64..1e9,
            (0u64..1_000_000, 0u32..4).prop_map(|(n, k)| n as f64 / 10f64.powi(k as i32)),
        ]
    }

    fn arb_cmp() -> impl Strategy<Value = Cmp> {
        prop::sample::select(vec![Cmp::Eq, Cmp::Ne, Cmp::Lt, Cmp::Le, Cmp::Gt, Cmp::Ge])
    }

    fn arb_type(any: bool) -> impl Strategy<Value = TypeSel> {
        let catalogue =
            prop::sample::select(CatalogueType::ALL.to_vec()).prop_map(TypeSel::Catalogue);
        let custom = "[a-z领券_0-9]{1,12}".prop_map(|n| TypeSel::Custom(format!("x_{n}")));
        if any {
            prop_oneof![Just(TypeSel::Any), catalogue, custom].boxed()
        } else {
            prop_oneof![catalogue, custom].boxed()
        }
    }

    fn arb_text() -> impl Strategy<Value = String> {
        "[a-z高意向\"'\\\\“”‘’(),= ]{0,10}[a-z高意向\"'\\\\“”]".prop_map(String::from)
    }

    fn arb_pred() -> impl Strategy<Value = Pred> {
        let layer = prop::sample::select(Layer::ALL.to_vec());
        prop_oneof![
            (arb_cmp(), layer.clone()).prop_map(|(c, l)| Pred::Layer(c, l)),
            prop::collection::vec(layer, 1..5).prop_map(Pred::LayerIn),
            Just(Pred::Follows),
            Just(Pred::Subscribed),
            prop::option::of(arb_text()).prop_map(Pred::InGroup),
            arb_text().prop_map(Pred::Tag),
            prop::sample::select(IdentityKind::ALL.to_vec()).prop_map(Pred::Has),
            (arb_type(true), arb_window(), arb_cmp(), arb_number())
                .prop_map(|(ty, window, cmp, n)| Pred::Count { ty, window, cmp, n }),
            (
                prop::sample::select(SumProp::ALL.to_vec()),
                arb_window(),
                arb_cmp(),
                arb_number()
            )
                .prop_map(|(prop, window, cmp, x)| Pred::Sum {
                    prop,
                    window,
                    cmp,
                    x
                }),
            (arb_cmp(), arb_number()).prop_map(|(c, n)| Pred::Engagement(c, n)),
            (arb_cmp(), arb_number()).prop_map(|(c, n)| Pred::Orders(c, n)),
            (arb_type(true), arb_window()).prop_map(|(ty, window)| Pred::Last { ty, window }),
            arb_window().prop_map(|window| Pred::FirstSeen { window }),
            (any::<bool>(), prop::sample::select(Domain::ALL.to_vec()))
                .prop_map(|(eq, domain)| Pred::FirstDomain { eq, domain }),
        ]
    }

    /// Expressions as the parser builds them: chains of two or more, flattened.
    fn arb_expr() -> impl Strategy<Value = Expr> {
        arb_pred()
            .prop_map(Expr::Pred)
            .prop_recursive(5, 48, 4, |inner| {
                prop_oneof![
                    inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
                    prop::collection::vec(inner.clone(), 2..5).prop_map(|v| {
                        let mut items = Vec::new();
                        for e in v {
                            push_flat(&mut items, e, |e| matches!(e, Expr::And(_)));
                        }
                        Expr::And(items)
                    }),
                    prop::collection::vec(inner, 2..5).prop_map(|v| {
                        let mut items = Vec::new();
                        for e in v {
                            push_flat(&mut items, e, |e| matches!(e, Expr::Or(_)));
                        }
                        Expr::Or(items)
                    }),
                ]
            })
    }

    /// Fragments of the language, to glue into near-valid nonsense.
    fn arb_soup() -> impl Strategy<Value = String> {
        let frag = prop::sample::select(vec![
            "layer",
            "in",
            "=",
            "!=",
            "<=",
            ">",
            "favorable",
            "好感",
            "(",
            ")",
            "（",
            "）",
            ",",
            "，",
            "count",
            "sum",
            "order.amount",
            "order.",
            ".amount",
            "*",
            "7d",
            "0d",
            "7y",
            "1.5",
            "-2",
            "tag",
            "\"高意向\"",
            "“",
            "”",
            "'",
            "\\",
            "has",
            "phone",
            "last",
            "within",
            "first_seen",
            "first_domain",
            "商域",
            "and",
            "or",
            "not",
            "&&",
            "||",
            "!",
            "x_",
            "x_a",
            "engagement_30d",
            "orders_180d",
            "in_group",
            " ",
            "\u{3000}",
            "\n",
        ]);
        prop::collection::vec(frag, 0..30).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn display_parses_back_to_the_same_expr(e in arb_expr()) {
            let text = e.to_string();
            prop_assert_eq!(parse(&text), Ok(e.clone()), "{}", text);
            prop_assert_eq!(e.preds().len(), parse(&text).unwrap().preds().len());
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,120}") {
            let _ = parse(&s);
        }

        #[test]
        fn fragments_never_panic_and_errors_point_inside(s in arb_soup()) {
            if let Err(e) = parse(&s) {
                prop_assert!(e.column >= 1 && e.column <= s.chars().count() + 1, "{} {}", s, e);
                prop_assert!(!e.message.is_empty());
            }
        }
    }
}
