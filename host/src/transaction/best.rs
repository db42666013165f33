//! Best-response selection (RFC 3261 section 16.7 step 6), a pure function.

/// Picks the response to send upstream among the final responses of a response context
/// (200-699): any 6xx wins; otherwise the lowest class; within 4xx, 401, 407, 415, 420 and
/// 484 are preferred (they let the UAC retry successfully). Ties go to the most recent
/// response (the last serial stage). Returns the index into `codes`, `None` when empty
/// (the caller then sends 408, 16.7 step 6).
pub fn choose_best(codes: &[u16]) -> Option<usize> {
    let rank = |code: u16| -> (u16, u8) {
        let class = code / 100;
        // Lower is better: 6xx beats everything, then classes in ascending order.
        let class_rank = if class == 6 { 0 } else { class };
        let preferred = matches!(code, 401 | 407 | 415 | 420 | 484);
        (class_rank, if preferred { 0 } else { 1 })
    };
    codes
        .iter()
        .enumerate()
        .filter(|(_, c)| (200..700).contains(*c))
        // min_by_key keeps the first minimum; iterate in reverse for "most recent wins".
        .rev()
        .min_by_key(|(_, c)| rank(**c))
        .map(|(i, _)| i)
}

/// The status actually sent for a chosen best response: 503 becomes 500 (16.7 step 6: a
/// proxy SHOULD NOT forward 503, which would tell the UAC that this proxy is overloaded).
pub(crate) fn upstream_code(best: u16) -> u16 {
    if best == 503 { 500 } else { best }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_table() {
        let cases: &[(&[u16], Option<usize>)] = &[
            (&[], None),
            (&[486], Some(0)),
            (&[486, 603], Some(1)),
            (&[603, 200], Some(0)),
            (&[404, 302], Some(1)),
            (&[500, 404], Some(1)),
            (&[404, 401], Some(1)),
            (&[407, 404], Some(0)),
            (&[404, 415, 486], Some(1)),
            (&[484, 420], Some(1)),
            (&[486, 404], Some(1)),
            (&[503, 480], Some(1)),
            (&[503, 500], Some(1)),
            (&[600, 604], Some(1)),
            (&[480, 100, 999], Some(0)),
            (&[200, 486], Some(0)),
        ];
        for (codes, want) in cases {
            assert_eq!(choose_best(codes), *want, "codes {codes:?}");
        }
    }

    #[test]
    fn service_unavailable_becomes_500() {
        assert_eq!(upstream_code(503), 500);
        assert_eq!(upstream_code(486), 486);
    }
}
