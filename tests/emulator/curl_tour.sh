#!/usr/bin/env bash
# A tour of every call of the NHN Image API v2 guide with curl, against a running emulator
# (or any Keystone v2.0 + Glance v2 endpoint).  Prints one line per call: "<status> <call>".
#
#   curl_tour.sh IDENTITY_URL REGION_URL TENANT_ID USERNAME PASSWORD \
#                [MEMBER_TENANT_ID MEMBER_USERNAME MEMBER_PASSWORD]
#
# IDENTITY_URL ends in /v2.0; REGION_URL is the image endpoint without /v2.  With a second
# tenant, the image is shared with it and it accepts the share.  Needs curl and python3 (for
# reading JSON; set PYTHON to use another interpreter).  Leaves nothing behind: the image is
# deleted at the end.
set -u

if [ $# -ne 5 ] && [ $# -ne 8 ]; then
    sed -n '2,12p' "$0" >&2
    exit 2
fi
IDENTITY=$1
REGION=$2
TENANT=$3
USERNAME=$4
PASSWORD=$5
MEMBER=${6:-}
MEMBER_USER=${7:-}
MEMBER_PASSWORD=${8:-}
PY=${PYTHON:-python3}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
BODY="$WORK/body"

# json_field FILE EXPR: print a field of a JSON file, EXPR being Python indexing like ["id"].
json_field() {
    "$PY" -c 'import json, sys; print(eval("json.load(open(sys.argv[1]))" + sys.argv[2]))' "$1" "$2"
}

# call LABEL CURL_ARGS...: run curl, keep the body in $BODY, print the status and the label.
call() {
    local label=$1
    shift
    local code
    code=$(curl -s -o "$BODY" -w '%{http_code}' "$@")
    echo "$code $label"
}

token_for() {
    local tenant=$1 user=$2 password=$3
    "$PY" -c 'import json, sys; print(json.dumps({"auth": {"tenantId": sys.argv[1],
        "passwordCredentials": {"username": sys.argv[2], "password": sys.argv[3]}}}))' \
        "$tenant" "$user" "$password" >"$WORK/auth.json"
    call "issue-token" -X POST "$IDENTITY/tokens" \
        -H 'Content-Type: application/json' --data-binary @"$WORK/auth.json"
    rm -f "$WORK/auth.json"
}

token_for "$TENANT" "$USERNAME" "$PASSWORD"
TOKEN=$(json_field "$BODY" '["access"]["token"]["id"]')
AUTH="X-Auth-Token: $TOKEN"
PATCH_TYPE='Content-Type: application/openstack-images-v2.1-json-patch'

call "create-image" -X POST "$REGION/v2/images" -H "$AUTH" -H 'Content-Type: application/json' \
    -d '{"name": "curl-tour", "container_format": "bare", "disk_format": "raw",
         "os_type": "linux", "os_distro": "ubuntu", "os_version": "Server 22.04 LTS"}'
IMAGE=$(json_field "$BODY" '["id"]')

call "show-image" "$REGION/v2/images/$IMAGE" -H "$AUTH"
call "list-images" "$REGION/v2/images?limit=5&sort_key=name&sort_dir=asc" -H "$AUTH"
call "update-add" -X PATCH "$REGION/v2/images/$IMAGE" -H "$AUTH" -H "$PATCH_TYPE" \
    -d '[{"op": "add", "path": "/metadata1", "value": "value1"}]'
call "update-replace" -X PATCH "$REGION/v2/images/$IMAGE" -H "$AUTH" -H "$PATCH_TYPE" \
    -d '[{"op": "replace", "path": "/metadata1", "value": "value2"}]'
call "update-remove" -X PATCH "$REGION/v2/images/$IMAGE" -H "$AUTH" -H "$PATCH_TYPE" \
    -d '[{"op": "remove", "path": "/metadata1"}]'

head -c 300000 /dev/urandom >"$WORK/image.raw"
call "upload" -X PUT "$REGION/v2/images/$IMAGE/file" -H "$AUTH" \
    -H 'Content-Type: application/octet-stream' --data-binary @"$WORK/image.raw"
call "download" "$REGION/v2/images/$IMAGE/file" -H "$AUTH"
if cmp -s "$BODY" "$WORK/image.raw"; then echo "same download-bytes"; else echo "differ download-bytes"; fi
call "download-range" "$REGION/v2/images/$IMAGE/file" -H "$AUTH" -H 'Range: bytes=100-199'

call "add-tag" -X PUT "$REGION/v2/images/$IMAGE/tags/curl-tour" -H "$AUTH"
call "remove-tag" -X DELETE "$REGION/v2/images/$IMAGE/tags/curl-tour" -H "$AUTH"

call "set-visibility-shared" -X PATCH "$REGION/v2/images/$IMAGE" -H "$AUTH" -H "$PATCH_TYPE" \
    -d '[{"op": "replace", "path": "/visibility", "value": "shared"}]'
if [ -n "$MEMBER" ]; then
    call "add-member" -X POST "$REGION/v2/images/$IMAGE/members" -H "$AUTH" \
        -H 'Content-Type: application/json' -d "{\"member\": \"$MEMBER\"}"
    call "list-members" "$REGION/v2/images/$IMAGE/members" -H "$AUTH"
    call "show-member" "$REGION/v2/images/$IMAGE/members/$MEMBER" -H "$AUTH"
    token_for "$MEMBER" "$MEMBER_USER" "$MEMBER_PASSWORD"
    MEMBER_TOKEN=$(json_field "$BODY" '["access"]["token"]["id"]')
    call "accept-member" -X PUT "$REGION/v2/images/$IMAGE/members/$MEMBER" \
        -H "X-Auth-Token: $MEMBER_TOKEN" -H 'Content-Type: application/json' \
        -d '{"status": "accepted"}'
    call "delete-member" -X DELETE "$REGION/v2/images/$IMAGE/members/$MEMBER" -H "$AUTH"
fi
call "delete-image" -X DELETE "$REGION/v2/images/$IMAGE" -H "$AUTH"
call "show-deleted-image" "$REGION/v2/images/$IMAGE" -H "$AUTH"
