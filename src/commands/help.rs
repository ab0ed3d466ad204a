//! `!help`: the command list, generated from the registry.

use super::{REGISTRY, Reply};
use crate::matrix::html::escape_html;

/// The help text.
pub(crate) fn help() -> Reply {
    let mut plain = String::from("Boardroom commands:\n");
    let mut html = String::from("<p>Boardroom commands:</p>\n<ul>\n");
    for c in REGISTRY {
        let who = c.permission.describe();
        plain.push_str(&format!("  {} ({}; {}): {}\n", c.usage, c.context, who, c.summary));
        html.push_str(&format!(
            "<li><code>{}</code> ({}; {}): {}</li>\n",
            escape_html(c.usage),
            escape_html(c.context),
            escape_html(who),
            escape_html(c.summary)
        ));
    }
    html.push_str("</ul>");
    Reply { plain: plain.trim_end().to_owned(), html }
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_lists_every_command() {
        let h = super::help();
        for c in super::REGISTRY {
            assert!(h.plain.contains(c.usage), "{}", c.usage);
            assert!(h.html.contains(&super::escape_html(c.usage)), "{}", c.usage);
        }
    }
}
