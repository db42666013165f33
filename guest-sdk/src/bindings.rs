//! The raw bindings wit-bindgen generates from `wit/route.wit` (world `route`).
//!
//! Route authors use the idiomatic wrappers of the crate root instead; these
//! stay public because the `route!` macro expands in the route crate and must
//! name them, and as an escape hatch for anything the wrappers do not cover.
//! The WIT's documentation carries over to the generated items that have it.

// Generated code: the WIT documents what a route author meets (interfaces,
// functions, error cases); the generated plumbing has nothing to say.
#![allow(missing_docs, reason = "generated from wit/route.wit, whose docs carry over where it has them")]

wit_bindgen::generate!({
    path: "../wit",
    world: "route",
    pub_export_macro: true,
    export_macro_name: "export",
    default_bindings_module: "sipbox_guest::bindings",
    // Generated code (here and in the export macro expanded in route crates)
    // reaches the runtime through this crate, so route crates depend on
    // `sipbox-guest` alone.
    runtime_path: "sipbox_guest::wit_bindgen::rt",
    // So that errors (and the SDK's `Error`, which holds them) compare in
    // tests and `matches!`-free code.
    additional_derives: [PartialEq],
});
