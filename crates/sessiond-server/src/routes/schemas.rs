//! Types that exist only for the OpenAPI document and that handlers name in their
//! annotations. A leaf module: the document ([`super::openapi`]) lists every handler, so
//! handlers must not import it back.

use utoipa::ToSchema;

/// Raw bytes (`format: binary`): the body of attachments and snapshots in the document.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);
