//! Markup for the console's pages. Every value that did not come from this file goes through
//! [`Escaped`]: event fields, rule titles and reasons are attacker-reachable text.

use std::fmt;

/// `text` for an HTML text node or a quoted attribute value.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

/// The stylesheet, served as `/static/console.css` (the CSP forbids inline style).
pub const STYLESHEET: &str = include_str!("console.css");

/// A whole page: the navigation for a logged-in `operator`, or none on the login page.
pub fn page(title: &str, operator: Option<(&str, &str, &str)>, body: &str) -> String {
    let nav = match operator {
        Some((name, role, csrf)) => format!(
            "<nav><a href=\"/alerts\">Alerts</a> <a href=\"/approvals\">Approvals</a> \
<a href=\"/engine\">Engine</a> <span class=\"who\">{} ({})</span>\
<form method=\"post\" action=\"/logout\" class=\"inline\">{}<button>Log out</button></form></nav>",
            Escaped(name),
            Escaped(role),
            csrf_field(csrf)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · palisade</title><link rel=\"stylesheet\" href=\"/static/console.css\"></head>\
<body>{nav}<main><h1>{}</h1>{body}</main></body></html>\n",
        Escaped(title),
        Escaped(title)
    )
}

/// The hidden field every state-changing form carries.
pub fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        Escaped(token)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_a_value_is_text() {
        assert_eq!(
            Escaped("<script>alert('x')</script> & \"q\"").to_string(),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
