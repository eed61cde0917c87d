//! Message texts with placeholders: `欢迎关注！{{nickname}}`. A placeholder names one of
//! [`FIELDS`]; a file naming another is refused when it is applied. At send time each field
//! comes from the fan; a field the fan lacks takes the step's `default`, or the send is skipped
//! with the reason `missing_field` (never a message with a hole in it).

use std::fmt;

/// The fields a template may name, with what each holds (for docs and messages).
pub const FIELDS: &[(&str, &str)] = &[
    ("nickname", "the fan's latest nickname (props.nickname or props.nick_name of an event)"),
    ("name", "the name the fan gave on a lead form (props.name)"),
    ("fan_id", "Siyu's fan id"),
    ("layer", "the fan's layer label (潜在粉丝, 路人粉丝, 好感粉丝, 真爱粉丝)"),
    ("douyin_open_id", "the fan's Douyin open_id"),
    ("phone", "the fan's phone, masked (138****8000)"),
];

/// A parsed template: literal text and field names, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// An index into [`FIELDS`].
    Field(usize),
}

/// Why a template was refused: the character column (1-based) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub column: usize,
    /// `unknown_template_field` or `invalid_template`.
    pub code: &'static str,
    pub message: String,
}

/// A field the fan lacks, at render time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub &'static str);

impl Template {
    /// Parses `text`: `{{ name }}` (spaces inside allowed) names a field; `{{` without a
    /// closing `}}`, an empty name or a name not in [`FIELDS`] is refused (with a
    /// did-you-mean for a near miss).
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let _ = text;
        todo!("issue 13: templates")
    }

    /// The text with each field filled by `field(name)`; a missing one takes `default`, or
    /// the first missing field is the error.
    pub fn render(
        &self,
        field: &dyn Fn(&str) -> Option<String>,
        default: Option<&str>,
    ) -> Result<String, Missing> {
        let _ = (field, default);
        todo!("issue 13: templates")
    }

    /// The field names it uses.
    pub fn fields(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(i) => Some(FIELDS[*i].0),
            Part::Text(_) => None,
        })
    }
}

impl fmt::Display for Template {
    /// The template as written (normalized: `{{name}}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.parts {
            match p {
                Part::Text(t) => f.write_str(t)?,
                Part::Field(i) => write!(f, "{{{{{}}}}}", FIELDS[*i].0)?,
            }
        }
        Ok(())
    }
}
