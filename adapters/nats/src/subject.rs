//! NATS subject patterns: whether two of them can match the same subject.

/// Whether some subject matches both `a` and `b`, patterns made of
/// dot-separated tokens where `*` stands for one token and `>` for one or
/// more (here `>` may also stand before other tokens, as in the
/// dead-letter pattern `orders.>.dlq` of a filter `orders.>`).
///
/// ```text
/// overlap("orders.>.dlq", "orders.>")  == true   (orders.eu.dlq)
/// overlap("orders.*.dlq", "orders.*")  == false  (one token too many)
/// overlap("dead.orders", "orders.>")   == false
/// ```
pub(crate) fn overlap(a: &str, b: &str) -> bool {
    let a: Vec<&str> = a.split('.').collect();
    let b: Vec<&str> = b.split('.').collect();
    let mut seen = vec![false; (a.len() + 1) * (b.len() + 1)];
    meet(&a, &b, 0, 0, &mut seen)
}

/// Whether `a[i..]` and `b[j..]` match a common rest of a subject. `seen`
/// marks the pairs already tried: a pair met again is on a path that only
/// ever consumes tokens under two `>`, which the first visit covers.
fn meet(a: &[&str], b: &[&str], i: usize, j: usize, seen: &mut [bool]) -> bool {
    if i == a.len() || j == b.len() {
        return i == a.len() && j == b.len();
    }
    let at = i * (b.len() + 1) + j;
    if seen[at] {
        return false;
    }
    seen[at] = true;
    let (x, y) = (a[i], b[j]);
    let one = |t: &str| t == "*" || t == ">";
    if !(one(x) || one(y) || x == y) {
        return false;
    }
    // Both take one token; a `>` may go on taking more.
    let next_a: &[usize] = if x == ">" { &[i, i + 1] } else { &[i + 1] };
    let next_b: &[usize] = if y == ">" { &[j, j + 1] } else { &[j + 1] };
    next_a
        .iter()
        .any(|&ni| next_b.iter().any(|&nj| meet(a, b, ni, nj, seen)))
}

#[cfg(test)]
mod tests {
    use super::overlap;

    #[test]
    fn a_wildcard_stream_captures_its_default_dead_letters() {
        assert!(overlap("orders.>.dlq", "orders.>"));
        assert!(overlap("orders.eu.dlq", "orders.>"));
        assert!(overlap("orders.*.dlq", "orders.*.*"));
        assert!(overlap("orders.*.dlq", "orders.*.dlq"));
        assert!(overlap("orders.*.dlq", ">"));
        assert!(overlap("a.>.dlq", "*.b.>"));
    }

    #[test]
    fn subjects_outside_each_other_do_not_overlap() {
        assert!(!overlap("orders.*.dlq", "orders.*"));
        assert!(!overlap("orders.eu.dlq", "orders.*"));
        assert!(!overlap("dead.orders", "orders.>"));
        assert!(!overlap("orders.>.dlq", "orders.*"));
        assert!(!overlap("orders.>.dlq", "orders.>.retry"));
        assert!(!overlap("orders", "orders.>"), "`>` needs one token at least");
        assert!(!overlap("a.b", "a.b.c"));
    }

    #[test]
    fn two_wide_patterns_meet_without_looping() {
        assert!(overlap("a.>.>.z", "a.>"));
        assert!(overlap(">.>", ">"));
        assert!(!overlap("a.>.y", "b.>.y"));
    }
}
