//! Users' notifications: what processing records in the inbox ([`notify`]), and the
//! inbox operations ([`inbox`]). The inbox's
//! records are in [`crate::domain::inbox`], who a message mentions in
//! [`crate::domain::mention`].

pub(crate) mod inbox;
pub(crate) mod notify;
