//! The HTML pages: minijinja templates with HTML autoescaping (every template name ends in
//! `.html`), no scripts, one external stylesheet.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{context, Environment};
use serde::Serialize;
use time::OffsetDateTime;

pub(crate) const STYLESHEET: &str = include_str!("../templates/partner.css");

/// The site name on pages that are not about one partner application.
const SITE: &str = "Keyward partner";

pub(crate) struct Pages {
    env: Environment<'static>,
}

/// A page with a heading, paragraphs and an optional upstream `detail`.
#[derive(Serialize)]
pub(crate) struct Message<'a> {
    /// `error` or `success`: the heading's class.
    pub kind: &'a str,
    pub title: &'a str,
    pub paragraphs: Vec<String>,
    pub detail: Option<String>,
    /// A link under the text, such as back to the claim page.
    pub link: Option<Link>,
}

#[derive(Serialize)]
pub(crate) struct Link {
    pub href: String,
    pub text: &'static str,
}

impl Pages {
    pub(crate) fn new() -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        env.add_template("base.html", include_str!("../templates/base.html"))?;
        env.add_template("claim.html", include_str!("../templates/claim.html"))?;
        env.add_template("message.html", include_str!("../templates/message.html"))?;
        Ok(Self { env })
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx)
    }

    /// The claim page: what is being claimed and the form that starts the claim.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn claim(
        &self,
        project_name: &str,
        partner_name: &str,
        region: &str,
        expires_at: OffsetDateTime,
        token: &str,
        csrf: &str,
    ) -> Response {
        let ctx = context! {
            site => partner_name,
            project_name,
            partner_name,
            region,
            expires_at => format_time(expires_at),
            expires_at_iso => expires_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            expires_in => relative(expires_at - OffsetDateTime::now_utc()),
            token,
            csrf,
        };
        self.respond(StatusCode::OK, "claim.html", ctx)
    }

    pub(crate) fn message(&self, status: StatusCode, message: &Message<'_>) -> Response {
        let ctx = context! {
            site => SITE,
            ..minijinja::Value::from_serialize(message)
        };
        self.respond(status, "message.html", ctx)
    }

    /// An error page: a title and one explanation.
    pub(crate) fn error(
        &self,
        status: StatusCode,
        title: &str,
        text: impl Into<String>,
    ) -> Response {
        self.message(
            status,
            &Message {
                kind: "error",
                title,
                paragraphs: vec![text.into()],
                detail: None,
                link: None,
            },
        )
    }

    fn respond(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
        match self.render(name, ctx) {
            Ok(html) => (status, Html(html)).into_response(),
            Err(error) => {
                tracing::error!(%error, template = name, "cannot render a page");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
                    "internal error",
                )
                    .into_response()
            }
        }
    }
}

/// `2025-01-31 14:05 UTC`.
pub(crate) fn format_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// `in 23 hours`, `in 1 hour`, `in 45 minutes`, `in less than a minute`, `already passed`.
pub(crate) fn relative(left: time::Duration) -> String {
    let minutes = left.whole_minutes();
    if left.is_negative() {
        return "already passed".to_owned();
    }
    if minutes < 1 {
        return "in less than a minute".to_owned();
    }
    if minutes < 60 {
        return format!("in {minutes} minute{}", plural(minutes));
    }
    // Rounded to the nearest hour: 23 h 59 min reads as "in 24 hours".
    let hours = (minutes + 30) / 60;
    format!("in {hours} hour{}", plural(hours))
}

fn plural(n: i64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::macros::datetime;

    #[test]
    fn times_read_well() {
        assert_eq!(
            format_time(datetime!(2025-01-31 14:05:59 +02:00)),
            "2025-01-31 12:05 UTC"
        );
        assert_eq!(relative(time::Duration::hours(24)), "in 24 hours");
        assert_eq!(
            relative(time::Duration::hours(24) - time::Duration::seconds(5)),
            "in 24 hours"
        );
        assert_eq!(relative(time::Duration::minutes(61)), "in 1 hour");
        assert_eq!(relative(time::Duration::minutes(45)), "in 45 minutes");
        assert_eq!(relative(time::Duration::minutes(1)), "in 1 minute");
        assert_eq!(
            relative(time::Duration::seconds(5)),
            "in less than a minute"
        );
        assert_eq!(relative(time::Duration::seconds(-5)), "already passed");
    }

    #[test]
    fn output_is_escaped() {
        let pages = Pages::new().unwrap();
        let html = pages
            .render(
                "message.html",
                context! { site => "s", kind => "error", title => "<b>t</b>",
                paragraphs => vec!["<script>alert(1)</script>"], detail => "\"x\" & y",
                link => context! { href => "/claim?token=a&b=\"c\"", text => "again" } },
            )
            .unwrap();
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        // minijinja also escapes `/`.
        assert!(html.contains("&lt;b&gt;t&lt;&#x2f;b&gt;"));
        assert!(html.contains("&amp; y"));
        assert!(html.contains(r#"href="&#x2f;claim?token=a&amp;b=&quot;c&quot;""#));
    }
}
