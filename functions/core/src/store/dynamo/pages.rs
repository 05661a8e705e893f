//! Newest-first pages of one environment's items of a kind (deployments,
//! audit entries): one Query per page, paged by the opaque token.

use super::items::{check, from_item, pk, s};
use super::DynamoStore;
use crate::store::{decode_token, encode_token, Page, StoreError};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;

/// What a page Query reads: the environment's items whose sort key starts
/// with `prefix` (followed by the item's id), optionally only those whose
/// `filter` attribute has the value given.
pub(super) struct PageQuery<'a> {
    pub environment_id: &'a str,
    pub prefix: &'static str,
    pub limit: u32,
    pub next_token: Option<&'a str>,
    pub filter: Option<(&'static str, AttributeValue)>,
}

impl DynamoStore {
    /// One Query of `limit + 1` items, newest first, after the token's item:
    /// the extra item tells whether another page exists, so the last page
    /// never comes with a token to an empty page. With a filter (applied
    /// inside the same Query) a page may be short although more items
    /// follow: its token is then where the Query stopped reading.
    pub(super) async fn page<T: DeserializeOwned>(
        &self,
        q: PageQuery<'_>,
        id_of: impl Fn(&T) -> &str,
    ) -> Result<Page<T>, StoreError> {
        let env = q.environment_id;
        let after = q.next_token.map(|t| decode_token(env, t)).transpose()?;
        let limit = q.limit.clamp(1, 1000) as usize;
        let mut req = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", pk(env))
            .expression_attribute_values(":prefix", s(q.prefix))
            .scan_index_forward(false)
            .limit(limit as i32 + 1);
        let filtered = q.filter.is_some();
        if let Some((attribute, value)) = q.filter {
            req = req
                .filter_expression("#f = :f")
                .expression_attribute_names("#f", attribute)
                .expression_attribute_values(":f", value);
        }
        if let Some(after) = &after {
            req = req
                .exclusive_start_key("PK", pk(env))
                .exclusive_start_key("SK", s(format!("{}{after}", q.prefix)));
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) => {
                check("Query", e)?;
                return Err(StoreError::Failed(
                    "Query: unexpected condition failure".into(),
                ));
            }
        };
        let stopped_at = out
            .last_evaluated_key
            .as_ref()
            .and_then(|k| k.get("SK"))
            .and_then(|v| v.as_s().ok())
            .and_then(|sk| sk.strip_prefix(q.prefix))
            .map(str::to_string);
        let mut items = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item::<T>)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|i| id_of(i).to_string())
        } else if filtered {
            stopped_at
        } else {
            None
        };
        Ok(Page {
            items,
            next_token: next.map(|id| encode_token(env, &id)),
        })
    }
}
