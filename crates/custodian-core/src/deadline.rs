//! Calendar arithmetic for deadlines (GDPR Art. 12(3)): a request is answered within one
//! month of receipt, extendable by two further months. A month is a calendar month: the
//! same day of the month, or the month's last day when it has no such day (31 January + 1
//! month = 28 February, or 29 in a leap year).

use time::{Date, Month, OffsetDateTime};

fn days_in_month(year: i32, month: Month) -> u8 {
    time::util::days_in_month(month, year)
}

/// `date` plus `months` calendar months, clamped to the target month's last day.
pub fn add_months_to_date(date: Date, months: u32) -> Date {
    let total = date.year() as i64 * 12 + (date.month() as i64 - 1) + i64::from(months);
    let year = total.div_euclid(12) as i32;
    let month = Month::try_from((total.rem_euclid(12) + 1) as u8).expect("1..=12");
    let day = date.day().min(days_in_month(year, month));
    Date::from_calendar_date(year, month, day).expect("clamped to a valid day")
}

/// `at` plus `months` calendar months, keeping the time of day and offset.
pub fn add_months(at: OffsetDateTime, months: u32) -> OffsetDateTime {
    at.replace_date(add_months_to_date(at.date(), months))
}

/// The most a deadline may be extended, in months (Art. 12(3)).
pub const MAX_EXTENSION_MONTHS: u32 = 2;

/// When a request received at `received` must be answered, with `extended` further months.
pub fn due(received: OffsetDateTime, extended: u32) -> OffsetDateTime {
    add_months(received, 1 + extended.min(MAX_EXTENSION_MONTHS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn month_ends_clamp() {
        assert_eq!(
            add_months_to_date(date!(2026 - 01 - 31), 1),
            date!(2026 - 02 - 28)
        );
        assert_eq!(
            add_months_to_date(date!(2028 - 01 - 31), 1),
            date!(2028 - 02 - 29)
        );
        assert_eq!(
            add_months_to_date(date!(2026 - 03 - 31), 1),
            date!(2026 - 04 - 30)
        );
        assert_eq!(
            add_months_to_date(date!(2026 - 01 - 30), 1),
            date!(2026 - 02 - 28)
        );
        assert_eq!(
            add_months_to_date(date!(2026 - 02 - 28), 1),
            date!(2026 - 03 - 28)
        );
    }

    #[test]
    fn year_boundaries_and_leap_years() {
        assert_eq!(
            add_months_to_date(date!(2026 - 12 - 15), 1),
            date!(2027 - 01 - 15)
        );
        assert_eq!(
            add_months_to_date(date!(2026 - 11 - 30), 3),
            date!(2027 - 02 - 28)
        );
        assert_eq!(
            add_months_to_date(date!(2027 - 11 - 30), 3),
            date!(2028 - 02 - 29)
        );
        assert_eq!(
            add_months_to_date(date!(2100 - 01 - 31), 1),
            date!(2100 - 02 - 28)
        );
        assert_eq!(
            add_months_to_date(date!(2000 - 01 - 31), 1),
            date!(2000 - 02 - 29)
        );
        assert_eq!(
            add_months_to_date(date!(2024 - 02 - 29), 12),
            date!(2025 - 02 - 28)
        );
    }

    #[test]
    fn due_dates_and_extensions() {
        let r = datetime!(2026-01-31 10:15 UTC);
        assert_eq!(due(r, 0), datetime!(2026-02-28 10:15 UTC));
        assert_eq!(due(r, 1), datetime!(2026-03-31 10:15 UTC));
        assert_eq!(due(r, 2), datetime!(2026-04-30 10:15 UTC));
        // No more than two further months, however asked.
        assert_eq!(due(r, 5), due(r, 2));
        let leap = datetime!(2027-12-29 23:59 UTC);
        assert_eq!(due(leap, 2), datetime!(2028-03-29 23:59 UTC));
    }
}
