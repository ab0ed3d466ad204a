//! A delivery's body: `{board, actor, action, …}`, one of four actions, checked before
//! anything is done (unknown fields, a long title, a bad date or label are refused).

use ruma::OwnedUserId;
use serde::{Deserialize, Deserializer};

use crate::{
    boards::messages::MAX_TEXT_BYTES as MAX_COMMENT_BYTES,
    domain::task::{validate_due, validate_label, validate_title},
    error::Error,
};

/// What a delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", deny_unknown_fields)]
pub(crate) enum Delivery {
    /// Create a task, in the board's first column unless `status` names another.
    #[serde(rename = "task.create")]
    Create {
        /// The board's slug.
        board: String,
        /// The virtual user it is made as (`@<namespace_prefix><actor>`).
        actor: String,
        /// The task's title.
        title: String,
        /// The column.
        #[serde(default)]
        status: Option<String>,
        /// The full set of assignees (board members).
        #[serde(default)]
        assignees: Option<Vec<OwnedUserId>>,
        /// The full set of labels.
        #[serde(default)]
        labels: Option<Vec<String>>,
        /// The due date, `YYYY-MM-DD`; `null` clears it.
        #[serde(default, deserialize_with = "present")]
        due: Option<Option<String>>,
    },
    /// Change any of a task's fields.
    #[serde(rename = "task.update")]
    Update {
        /// The board's slug.
        board: String,
        /// The virtual user it is made as.
        actor: String,
        /// The task's number.
        number: u64,
        /// A new title.
        #[serde(default)]
        title: Option<String>,
        /// The column.
        #[serde(default)]
        status: Option<String>,
        /// The full set of assignees (board members).
        #[serde(default)]
        assignees: Option<Vec<OwnedUserId>>,
        /// The full set of labels.
        #[serde(default)]
        labels: Option<Vec<String>>,
        /// The due date, `YYYY-MM-DD`; `null` clears it.
        #[serde(default, deserialize_with = "present")]
        due: Option<Option<String>>,
    },
    /// Delete a task (the actor created it, or is a board admin).
    #[serde(rename = "task.delete")]
    Delete {
        /// The board's slug.
        board: String,
        /// The virtual user it is made as.
        actor: String,
        /// The task's number.
        number: u64,
    },
    /// Comment on a task.
    #[serde(rename = "task.comment")]
    Comment {
        /// The board's slug.
        board: String,
        /// The virtual user it is made as.
        actor: String,
        /// The task's number.
        number: u64,
        /// The comment's text; `@name` mentions notify board members.
        body: String,
    },
}

/// The fields a delivery may set besides the title; absent ones stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    /// The column.
    pub status: Option<String>,
    /// The full set of assignees (board members).
    pub assignees: Option<Vec<OwnedUserId>>,
    /// The full set of labels.
    pub labels: Option<Vec<String>>,
    /// The due date; `Some(None)` clears it.
    pub due: Option<Option<String>>,
}

impl Fields {
    /// Whether it sets nothing.
    pub(crate) fn is_empty(&self) -> bool {
        *self == Fields::default()
    }
}

/// A field that is present (`null` included) is `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl Delivery {
    /// Parses and checks a body: 400 `M_NOT_JSON` when it is not JSON, `M_BAD_JSON` when
    /// its shape is wrong (an unknown action or field, a missing one), `M_INVALID_PARAM`
    /// when a value is out of bounds.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, Error> {
        let delivery: Delivery = serde_json::from_slice(body).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                Error::NotJson(e.to_string())
            } else {
                Error::BadJson(e.to_string())
            }
        })?;
        delivery.check()?;
        Ok(delivery)
    }

    /// The board it acts on.
    pub(crate) fn board(&self) -> &str {
        match self {
            Delivery::Create { board, .. }
            | Delivery::Update { board, .. }
            | Delivery::Delete { board, .. }
            | Delivery::Comment { board, .. } => board,
        }
    }

    /// The name of the virtual user it acts as.
    pub(crate) fn actor(&self) -> &str {
        match self {
            Delivery::Create { actor, .. }
            | Delivery::Update { actor, .. }
            | Delivery::Delete { actor, .. }
            | Delivery::Comment { actor, .. } => actor,
        }
    }

    /// The fields it sets besides the title (none for a delete or a comment).
    pub(crate) fn fields(&self) -> Fields {
        match self {
            Delivery::Create { status, assignees, labels, due, .. }
            | Delivery::Update { status, assignees, labels, due, .. } => Fields {
                status: status.clone(),
                assignees: assignees.clone(),
                labels: labels.clone(),
                due: due.clone(),
            },
            Delivery::Delete { .. } | Delivery::Comment { .. } => Fields::default(),
        }
    }

    /// Its action, as the body names it.
    pub(crate) fn action(&self) -> &'static str {
        match self {
            Delivery::Create { .. } => "task.create",
            Delivery::Update { .. } => "task.update",
            Delivery::Delete { .. } => "task.delete",
            Delivery::Comment { .. } => "task.comment",
        }
    }

    fn check(&self) -> Result<(), Error> {
        let invalid = Error::InvalidParam;
        match self {
            Delivery::Create { title, .. } => {
                check_title(title)?;
                check_fields(&self.fields())
            }
            Delivery::Update { title, .. } => {
                let fields = self.fields();
                if title.is_none() && fields.is_empty() {
                    return Err(invalid(
                        "task.update changes nothing: give title, status, assignees, labels or due"
                            .into(),
                    ));
                }
                if let Some(t) = title {
                    check_title(t)?;
                }
                check_fields(&fields)
            }
            Delivery::Delete { .. } => Ok(()),
            Delivery::Comment { body, .. } => {
                if body.trim().is_empty() {
                    return Err(invalid("body must not be empty".into()));
                }
                if body.len() > MAX_COMMENT_BYTES {
                    return Err(invalid(format!(
                        "body has {} bytes; a comment has at most {MAX_COMMENT_BYTES}",
                        body.len()
                    )));
                }
                Ok(())
            }
        }
    }
}

fn check_title(title: &str) -> Result<(), Error> {
    validate_title(title).map_err(Error::InvalidParam)
}

fn check_fields(fields: &Fields) -> Result<(), Error> {
    if let Some(Some(due)) = &fields.due {
        validate_due(due).map_err(Error::InvalidParam)?;
    }
    for label in fields.labels.iter().flatten() {
        validate_label(label).map_err(Error::InvalidParam)?;
    }
    if let Some(status) = &fields.status
        && status.trim().is_empty()
    {
        return Err(Error::InvalidParam("status must name a column".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: serde_json::Value) -> Result<Delivery, Error> {
        Delivery::parse(v.to_string().as_bytes())
    }

    #[test]
    fn each_action_parses_with_its_fields() {
        let d = parse(json!({"board": "demo", "actor": "ci", "action": "task.create",
            "title": "Ship it", "labels": ["release"], "due": "2026-12-31"}))
        .expect("create");
        let Delivery::Create { board, actor, title, .. } = &d else { panic!("{d:?}") };
        assert_eq!((board.as_str(), actor.as_str(), title.as_str()), ("demo", "ci", "Ship it"));
        assert_eq!(
            d.fields(),
            Fields {
                labels: Some(vec!["release".into()]),
                due: Some(Some("2026-12-31".into())),
                ..Fields::default()
            }
        );
        let d = parse(json!({"board": "demo", "actor": "ci", "action": "task.update",
            "number": 4, "status": "done", "assignees": ["@alice:localhost"], "due": null}))
        .expect("update");
        let Delivery::Update { number: 4, title: None, .. } = &d else { panic!("{d:?}") };
        let fields = d.fields();
        assert_eq!(fields.status.as_deref(), Some("done"));
        assert_eq!(fields.due, Some(None), "null clears the due date");
        assert_eq!(fields.assignees.as_ref().map(Vec::len), Some(1));
        let d = parse(json!({"board": "demo", "actor": "ci", "action": "task.update",
            "number": 4, "title": "New"}))
        .expect("update");
        assert_eq!(d.fields().due, None, "an absent due date stays");
        let d = parse(json!({"board": "b", "actor": "ci", "action": "task.delete", "number": 1}))
            .expect("delete");
        assert_eq!((d.board(), d.actor(), d.action()), ("b", "ci", "task.delete"));
        let d = parse(json!({"board": "b", "actor": "ci", "action": "task.comment",
            "number": 1, "body": "hi @alice"}))
        .expect("comment");
        assert_eq!(d.action(), "task.comment");
    }

    #[test]
    fn bad_bodies_are_refused_with_the_matrix_code_that_says_why() {
        let not_json = Delivery::parse(b"{\"board\":").expect_err("not json");
        assert!(matches!(not_json, Error::NotJson(_)), "{not_json:?}");
        for bad in [
            json!({"board": "b", "actor": "ci", "action": "task.move", "number": 1}),
            json!({"board": "b", "actor": "ci", "number": 1}),
            json!({"board": "b", "actor": "ci", "action": "task.delete"}),
            json!({"board": "b", "actor": "ci", "action": "task.delete", "number": 1, "x": 1}),
            json!({"board": "b", "actor": "ci", "action": "task.create", "title": "t", "x": 1}),
            json!({"board": "b", "actor": "ci", "action": "task.comment", "number": -1, "body": "x"}),
            json!({"board": "b", "action": "task.delete", "number": 1}),
            json!({"board": "b", "actor": "ci", "action": "task.update", "number": 1,
                   "assignees": ["alice"]}),
            json!(["task.delete"]),
        ] {
            let e = parse(bad.clone()).expect_err("refused");
            assert!(matches!(e, Error::BadJson(_)), "{bad}: {e:?}");
        }
        for (bad, says) in [
            (json!({"board": "b", "actor": "ci", "action": "task.create", "title": " "}), "blank"),
            (
                json!({"board": "b", "actor": "ci", "action": "task.create",
                       "title": "é".repeat(257)}),
                "at most 256",
            ),
            (
                json!({"board": "b", "actor": "ci", "action": "task.create", "title": "t",
                       "due": "2026-02-30"}),
                "not a date",
            ),
            (
                json!({"board": "b", "actor": "ci", "action": "task.update", "number": 1,
                       "labels": ["a b"]}),
                "not a label",
            ),
            (json!({"board": "b", "actor": "ci", "action": "task.update", "number": 1}), "nothing"),
            (
                json!({"board": "b", "actor": "ci", "action": "task.comment", "number": 1,
                       "body": "x".repeat(16_001)}),
                "at most 16000",
            ),
        ] {
            let e = parse(bad.clone()).expect_err("refused");
            assert!(
                matches!(&e, Error::InvalidParam(m) if m.contains(says)),
                "{bad}: {e:?} should say {says}"
            );
        }
    }
}
