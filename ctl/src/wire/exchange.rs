//! Which answer each request gets. The crate ties a request to its response type (its
//! `Request` trait) only when built with its broker side too; the client side we build with
//! has every message and its versions, so the pairs we use are named here.

use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, DescribeQuorumRequest, DescribeQuorumResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, OffsetFetchRequest,
    OffsetFetchResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message};

/// A request we send, and the response it is answered with.
pub trait Exchange: Encodable + Message + HeaderVersion {
    const KEY: i16;
    type Response: Decodable + HeaderVersion;
}

macro_rules! exchanges {
    ($($key:ident: $req:ty => $resp:ty,)*) => {
        $(impl Exchange for $req {
            const KEY: i16 = ApiKey::$key as i16;
            type Response = $resp;
        })*
    };
}

exchanges! {
    ApiVersions: ApiVersionsRequest => ApiVersionsResponse,
    FindCoordinator: FindCoordinatorRequest => FindCoordinatorResponse,
    OffsetFetch: OffsetFetchRequest => OffsetFetchResponse,
    ListOffsets: ListOffsetsRequest => ListOffsetsResponse,
    ListGroups: ListGroupsRequest => ListGroupsResponse,
    DescribeGroups: DescribeGroupsRequest => DescribeGroupsResponse,
    ConsumerGroupDescribe: ConsumerGroupDescribeRequest => ConsumerGroupDescribeResponse,
    LeaveGroup: LeaveGroupRequest => LeaveGroupResponse,
    Metadata: MetadataRequest => MetadataResponse,
    DescribeQuorum: DescribeQuorumRequest => DescribeQuorumResponse,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kafkas() {
        assert_eq!(ApiVersionsRequest::KEY, 18);
        assert_eq!(ListOffsetsRequest::KEY, 2);
        assert_eq!(LeaveGroupRequest::KEY, 13);
        assert_eq!(ConsumerGroupDescribeRequest::KEY, 69);
    }
}
