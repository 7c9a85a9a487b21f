//! Entry point for the `query` fuzz target and the corpus replay test.

/// Any text: parses or is refused with an error; what parses prints in canonical form, and
/// that form parses back to the same plan.
pub fn query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(plan) = crate::parse(text) else { return };
    let printed = plan.to_string();
    if printed.len() > crate::MAX_QUERY_BYTES {
        return; // quoting can lengthen a query past the cap
    }
    let again = crate::parse(&printed).unwrap_or_else(|e| panic!("{printed:?} does not parse back: {e}"));
    assert_eq!(again, plan, "{text:?} printed as {printed:?}");
}
