//! Users' notifications: the inbox's model ([`inbox`]), who a message mentions
//! ([`mention`]), and what processing records in the inbox ([`notify`]).

pub mod inbox;
pub mod mention;
pub mod notify;
