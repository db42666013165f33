//! host/src/sip/edit_props.rs (the edit property of the stable unit test `sip::tests_props`),
//! compiled against [`crate::sip`]: the file names what it uses through `super::`, which is
//! `sip` in the host crate and this module here.

pub use crate::sip::*;

#[path = "../../src/sip/edit_props.rs"]
pub mod edit_props;
