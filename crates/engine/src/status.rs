//! Status conditions, as cert-manager writes them.

use certwright_api::Condition;
use certwright_pki::der::rfc3339;

/// A new condition, as of `now`.
pub fn condition(type_: &str, status: &str, reason: &str, message: &str, now: i64) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Some(rfc3339(now)),
        observed_generation: None,
    }
}

/// Sets a condition, keeping its lastTransitionTime when its status does not change.
pub fn set_condition(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: i64,
) {
    let status = if status { "True" } else { "False" };
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = Some(rfc3339(now));
        }
        c.status = status.into();
        c.reason = reason.into();
        c.message = message.into();
    } else {
        conds.push(condition(type_, status, reason, message, now));
    }
}

pub fn remove_condition(conds: &mut Vec<Condition>, type_: &str) {
    conds.retain(|c| c.type_ != type_);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut c = Vec::new();
        set_condition(&mut c, "Ready", false, "DoesNotExist", "m", 0);
        set_condition(&mut c, "Ready", false, "Issuing", "m2", 10);
        assert_eq!(
            c[0].last_transition_time.as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        assert_eq!(c[0].reason, "Issuing");
        set_condition(&mut c, "Ready", true, "Ready", "ok", 20);
        assert_eq!(
            c[0].last_transition_time.as_deref(),
            Some("1970-01-01T00:00:20Z")
        );
        remove_condition(&mut c, "Ready");
        assert!(c.is_empty());
    }
}
