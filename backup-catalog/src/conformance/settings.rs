//! Checks of the global settings.

use backup_core::model::{Limit, Settings};
use backup_core::ports::Catalog;

use super::ok;

/// Settings: each value put reads back, a put replaces the previous value (also with the
/// default value); the value found first is put back at the end.
pub async fn settings(catalog: &dyn Catalog) {
    let c = catalog;
    let found = ok(c.get_settings().await, "get settings");
    for limit in [
        Limit::Max(7),
        Limit::Unlimited,
        Limit::Disabled,
        Limit::Max(u32::MAX),
        Limit::Default,
    ] {
        let mut settings = found.clone();
        settings.max_on_demand_snapshots = limit;
        ok(c.put_settings(&settings).await, "put settings");
        let got = ok(c.get_settings().await, "get settings");
        assert_eq!(
            got, settings,
            "conformance: the settings should read back as last put ({limit:?})"
        );
    }
    ok(c.put_settings(&found).await, "put the settings found first");
    assert_eq!(
        ok(c.get_settings().await, "get settings"),
        found,
        "conformance: putting the first settings back should restore them"
    );
}

/// A catalog that never stored settings reads [`Settings::default`]. Only meaningful on a new
/// catalog: see [`empty`](super::empty).
pub(super) async fn default_settings(c: &dyn Catalog) {
    assert_eq!(
        ok(c.get_settings().await, "get settings of a new catalog"),
        Settings::default(),
        "conformance: a catalog that never stored settings should read the defaults"
    );
}
