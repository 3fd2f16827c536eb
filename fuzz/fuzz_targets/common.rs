//! A config with one table of every provider kind (secrets given), shared by the targets.

use payrecon::config::Config;

pub const CONFIG: &str = r#"
[ledger]
path = "/nonexistent/payrecon-fuzz.db"
[providers.mopay]
kind = "mopay"
[providers.little]
kind = "little"
api_key_env = "K"
[providers.moflay]
kind = "moflay"
api_key_env = "K"
[providers.vesicash]
kind = "vesicash"
base_url = "http://127.0.0.1:1"
public_key_env = "P"
secret_key_env = "K"
[providers.mopay_ng]
kind = "mopay_ng"
public_key_env = "P"
secret_key_env = "K"
status_endpoint = "payment_status"
status_pointer = "/DATA/status"
amount_pointer = "/DATA/amount"
reference_pointer = "/DATA/reference"
currency_pointer = "/DATA/currency"
status_map = { SUCCESS = "COMPLETED", PENDING = "PENDING", FAILED = "FAILED" }
"#;

pub fn config() -> Config {
    Config::parse(CONFIG, &|_: &str| Some("k_fuzz".to_string())).expect("the fuzz config is valid")
}
