//! The kinds of requests a store serves, as the wrappers count, fail and retry them.

use std::fmt;

use object_store::GetOptions;

/// One kind of [`ObjectStore`](object_store::ObjectStore) request.
///
/// Multipart uploads count as one `PutMultipart` (start), one `PutPart` per part and one
/// `CompleteMultipart` or `AbortMultipart`, as S3 bills them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RequestKind {
    /// A single-request upload (`put`, `put_opts`).
    Put,
    /// The start of a multipart upload.
    PutMultipart,
    /// One part of a multipart upload.
    PutPart,
    /// The completion of a multipart upload.
    CompleteMultipart,
    /// The abort of a multipart upload.
    AbortMultipart,
    /// A read of a whole object or a range (`get`, `get_opts`, `get_range`).
    Get,
    /// A read of several ranges of one object (`get_ranges`).
    GetRanges,
    /// A metadata read (`head`, `get_opts` with `head: true`).
    Head,
    /// A recursive listing (`list`, `list_with_offset`).
    List,
    /// A one-level listing (`list_with_delimiter`).
    ListWithDelimiter,
    /// The deletion of one object (each path of `delete_stream`).
    Delete,
    /// A server-side copy (`copy`, `copy_if_not_exists`).
    Copy,
    /// A rename (`rename`, `rename_if_not_exists`).
    Rename,
}

impl RequestKind {
    /// Every kind, in declaration order.
    pub const ALL: [RequestKind; 13] = [
        RequestKind::Put,
        RequestKind::PutMultipart,
        RequestKind::PutPart,
        RequestKind::CompleteMultipart,
        RequestKind::AbortMultipart,
        RequestKind::Get,
        RequestKind::GetRanges,
        RequestKind::Head,
        RequestKind::List,
        RequestKind::ListWithDelimiter,
        RequestKind::Delete,
        RequestKind::Copy,
        RequestKind::Rename,
    ];

    /// A short lower-case name (`put`, `get`, `list_with_delimiter`, ...).
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Put => "put",
            RequestKind::PutMultipart => "put_multipart",
            RequestKind::PutPart => "put_part",
            RequestKind::CompleteMultipart => "complete_multipart",
            RequestKind::AbortMultipart => "abort_multipart",
            RequestKind::Get => "get",
            RequestKind::GetRanges => "get_ranges",
            RequestKind::Head => "head",
            RequestKind::List => "list",
            RequestKind::ListWithDelimiter => "list_with_delimiter",
            RequestKind::Delete => "delete",
            RequestKind::Copy => "copy",
            RequestKind::Rename => "rename",
        }
    }

    /// Whether S3 bills this kind as a class A request (PUT, COPY, POST, LIST); the others
    /// are class B (GET, HEAD) or free (DELETE, abort).
    pub fn is_s3_class_a(self) -> bool {
        matches!(
            self,
            RequestKind::Put
                | RequestKind::PutMultipart
                | RequestKind::PutPart
                | RequestKind::CompleteMultipart
                | RequestKind::List
                | RequestKind::ListWithDelimiter
                | RequestKind::Copy
                | RequestKind::Rename
        )
    }

    /// Whether S3 bills this kind as a class B request (GET, HEAD).
    pub fn is_s3_class_b(self) -> bool {
        matches!(
            self,
            RequestKind::Get | RequestKind::GetRanges | RequestKind::Head
        )
    }

    /// The kind of a `get_opts` call.
    pub(crate) fn of_get(options: &GetOptions) -> Self {
        if options.head {
            RequestKind::Head
        } else {
            RequestKind::Get
        }
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
