//! `list-clients`: the agency's clients.
//!
//! Input `{"base_url"}` → `GET /agency/v1/clients` → output
//! `{"clients": [{"id", "name", "email"}, …]}` in the upstream's order.
//! A client without an id or an email address is a fatal error (a report
//! could not be addressed), as are two clients with one id.

use std::collections::BTreeSet;

use ferry_sdk::{Error, Result, http};
use pipeline_common::types::{base_url, check_client};
use pipeline_common::{ClientList, net};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    base_url: String,
}

#[ferry_sdk::step]
fn list_clients(input: Input) -> Result<ClientList> {
    let base = base_url(&input.base_url)?;
    let list: ClientList = net::call(http::get(format!("{base}/agency/v1/clients")), "the client list")?;
    let mut ids = BTreeSet::new();
    for (i, client) in list.clients.iter().enumerate() {
        check_client(&client.id).map_err(|e| e.context(format!("client {} of the list", i + 1)))?;
        if !client.email.contains('@') {
            return Err(Error::fatal(format!("client {} has no email address: {:?}", client.id, client.email)));
        }
        if !ids.insert(client.id.as_str()) {
            return Err(Error::fatal(format!("client {} is listed twice", client.id)));
        }
    }
    ferry_sdk::info!("{} clients", list.clients.len());
    Ok(list)
}
