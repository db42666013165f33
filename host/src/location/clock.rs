//! Time for the location service: unix seconds for stored bindings, tokio
//! instants for deadlines, and the RFC 1123 `Date` header.
//!
//! Bindings carry absolute unix seconds (they survive a restart and are shown
//! to operators), but timers must run on tokio's monotonic clock so a wall
//! clock step does not expire everything at once and tests can use paused
//! time. [`Clock`] pins one pair (monotonic instant, unix time) at start-up and
//! derives both views from the monotonic side.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Maps between tokio's monotonic clock and unix seconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    base: Instant,
    base_unix: Duration,
}

impl Clock {
    /// Pins the current wall-clock time to the current monotonic instant.
    pub(crate) fn new() -> Clock {
        Clock {
            base: Instant::now(),
            // A clock before 1970 is a broken host; treat it as the epoch rather than panic.
            base_unix: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default(),
        }
    }

    /// Current time in whole unix seconds (rounded down).
    pub(crate) fn now_unix(&self) -> u64 {
        (self.base_unix + self.base.elapsed()).as_secs()
    }

    /// The monotonic instant at which `now_unix()` reaches `unix`.
    pub(crate) fn deadline(&self, unix: u64) -> Instant {
        let target = Duration::from_secs(unix).saturating_sub(self.base_unix);
        // `checked_add` fails only for absurd far-future values; a day from now
        // is as good as "never" because the purge task re-computes after waking.
        self.base.checked_add(target).unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400))
    }
}

/// Formats unix seconds as an RFC 1123 date in GMT, as the SIP `Date` header
/// requires (RFC 3261 20.17): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn http_date(unix: u64) -> String {
    let d = CivilTime::from_unix(unix);
    format!("{}, {:02} {} {} {:02}:{:02}:{:02} GMT", d.weekday, d.day, d.month, d.year, d.hour, d.minute, d.second)
}

/// A UTC calendar time broken down for formatting (no time zone database).
pub(crate) struct CivilTime {
    pub(crate) year: u64,
    /// "Jan" ..= "Dec".
    pub(crate) month: &'static str,
    pub(crate) day: u64,
    /// "Sun" ..= "Sat".
    pub(crate) weekday: &'static str,
    pub(crate) hour: u64,
    pub(crate) minute: u64,
    pub(crate) second: u64,
}

impl CivilTime {
    pub(crate) fn from_unix(unix: u64) -> CivilTime {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // 1970-01-01 was a Thursday
        const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let days = unix / 86_400;
        let secs = unix % 86_400;
        let (year, month, day) = civil_from_days(days);
        CivilTime {
            year,
            month: MONTHS[(month - 1) as usize],
            day,
            weekday: DAYS[(days % 7) as usize],
            hour: secs / 3600,
            minute: secs % 3600 / 60,
            second: secs % 60,
        }
    }
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`, unsigned form).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // shift the epoch to 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year starting March 1st
    let mp = (5 * doy + 2) / 153; // month starting March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc1123_dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // RFC 7231's example date.
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        // Leap day and a century leap year.
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(1_709_164_799), "Wed, 28 Feb 2024 23:59:59 GMT");
        assert_eq!(http_date(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
    }

    #[test]
    fn deadline_matches_unix_seconds() {
        let clock = Clock::new();
        let now = clock.now_unix();
        let at = clock.deadline(now + 10);
        let from_now = at.saturating_duration_since(Instant::now());
        assert!(from_now <= Duration::from_secs(10) && from_now > Duration::from_secs(8), "{from_now:?}");
        // A deadline in the past is "now or earlier", never a panic.
        assert!(clock.deadline(0) <= Instant::now());
    }
}
