//! Message texts with placeholders: `欢迎关注！{{nickname}}`. A placeholder names one of
//! [`FIELDS`]; a file naming another is refused when it is applied. At send time each field
//! comes from the fan; a field the fan lacks takes the step's `default`, or the send is skipped
//! with the reason `missing_field` (never a message with a hole in it).
//!
//! Only a double brace opens a placeholder, so a lone `{` or `}` (a JSON snippet, an emoticon)
//! is plain text. Once a `{{` opens, it must close with a known name: a typo such as
//! `{{nickame}}` is refused with a did-you-mean rather than sent to fans as written.

use std::fmt;

/// The fields a template may name, with what each holds (for docs and messages).
pub const FIELDS: &[(&str, &str)] = &[
    (
        "nickname",
        "the fan's latest nickname (props.nickname or props.nick_name of an event)",
    ),
    ("name", "the name the fan gave on a lead form (props.name)"),
    ("fan_id", "Siyu's fan id"),
    (
        "layer",
        "the fan's layer label (潜在粉丝, 路人粉丝, 好感粉丝, 真爱粉丝)",
    ),
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
        let mut parts = Vec::new();
        let mut rest = text;
        // Columns count characters, as the segment language's do, so they match what an
        // editor shows for Chinese text.
        let column = |rest: &str| text[..text.len() - rest.len()].chars().count() + 1;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let at = column(&rest[open..]);
            let inside = &rest[open + 2..];
            let Some(close) = inside.find("}}") else {
                return Err(TemplateError {
                    column: at,
                    code: "invalid_template",
                    message: format!(
                        "\"{{{{\" is not closed; write {{{{name}}}} with a name among {}",
                        field_list()
                    ),
                });
            };
            let raw = &inside[..close];
            let name = raw.trim();
            let name_column = column(&inside[raw.len() - raw.trim_start().len()..]);
            if name.is_empty() {
                return Err(TemplateError {
                    column: at,
                    code: "invalid_template",
                    message: format!(
                        "\"{{{{}}}}\" names no field; expected one of {}",
                        field_list()
                    ),
                });
            }
            let Some(i) = FIELDS.iter().position(|(f, _)| *f == name) else {
                return Err(TemplateError {
                    column: name_column,
                    code: "unknown_template_field",
                    message: format!(
                        "unknown field \"{name}\"; expected one of {}{}",
                        field_list(),
                        siyu_domain::suggest::did_you_mean(name, FIELDS.iter().map(|(f, _)| *f))
                    ),
                });
            };
            parts.push(Part::Field(i));
            rest = &inside[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The text with each field filled by `field(name)`; a missing one takes `default`, or
    /// the first missing field is the error.
    pub fn render(
        &self,
        field: &dyn Fn(&str) -> Option<String>,
        default: Option<&str>,
    ) -> Result<String, Missing> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(i) => {
                    let name = FIELDS[*i].0;
                    match (field(name), default) {
                        (Some(v), _) => out.push_str(&v),
                        (None, Some(d)) => out.push_str(d),
                        (None, None) => return Err(Missing(name)),
                    }
                }
            }
        }
        Ok(out)
    }

    /// The field names it uses.
    pub fn fields(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(i) => Some(FIELDS[*i].0),
            Part::Text(_) => None,
        })
    }
}

/// `nickname, name, …`, for messages.
fn field_list() -> String {
    FIELDS
        .iter()
        .map(|(f, _)| *f)
        .collect::<Vec<_>>()
        .join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn field(name: &str) -> Option<String> {
        match name {
            "nickname" => Some("小王".into()),
            "fan_id" => Some("f1".into()),
            _ => None,
        }
    }

    #[test]
    fn placeholders_with_or_without_spaces() {
        let t = Template::parse("欢迎关注！{{nickname}}，编号 {{ fan_id }}。").unwrap();
        assert_eq!(t.fields().collect::<Vec<_>>(), ["nickname", "fan_id"]);
        assert_eq!(t.render(&field, None).unwrap(), "欢迎关注！小王，编号 f1。");
        assert_eq!(t.to_string(), "欢迎关注！{{nickname}}，编号 {{fan_id}}。");
    }

    #[test]
    fn lone_braces_are_text() {
        let t = Template::parse(r#"{"a": 1} :-} {{nickname}}}"#).unwrap();
        assert_eq!(t.render(&field, None).unwrap(), r#"{"a": 1} :-} 小王}"#);
        assert_eq!(Template::parse("").unwrap().parts, []);
    }

    #[test]
    fn a_missing_field_takes_the_default_or_is_the_error() {
        let t = Template::parse("{{nickname}} {{phone}} {{name}}").unwrap();
        assert_eq!(t.render(&field, Some("朋友")).unwrap(), "小王 朋友 朋友");
        assert_eq!(t.render(&field, None), Err(Missing("phone")));
    }

    #[test]
    fn refused_templates_name_the_column() {
        let e = Template::parse("你好 {{nickname").unwrap_err();
        assert_eq!((e.code, e.column), ("invalid_template", 4));
        assert!(e.message.contains("not closed"), "{}", e.message);

        let e = Template::parse("a{{  }}").unwrap_err();
        assert_eq!((e.code, e.column), ("invalid_template", 2));

        let e = Template::parse("亲 {{ nickame }}").unwrap_err();
        assert_eq!((e.code, e.column), ("unknown_template_field", 6));
        assert!(
            e.message.ends_with("did you mean \"nickname\"?"),
            "{}",
            e.message
        );
        let e = Template::parse("{{order_id}}").unwrap_err();
        assert_eq!(e.code, "unknown_template_field");
        assert!(
            e.message.contains("nickname, name, fan_id"),
            "{}",
            e.message
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_display_parses_back(s in "[{} a-z_好]{0,30}") {
            if let Ok(t) = Template::parse(&s) {
                prop_assert_eq!(Template::parse(&t.to_string()), Ok(t));
            }
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,40}") {
            let _ = Template::parse(&s);
        }
    }
}
