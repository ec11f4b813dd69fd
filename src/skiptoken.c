/*-------------------------------------------------------------------------
 *
 * skiptoken.c
 *	  The $skiptoken of list_sync_errors: the key of a page's last row
 *	  (recordedDateTime, id), base64url-encoded without padding.
 *
 *	  29 bytes before encoding: a format byte, the timestamp (8 bytes,
 *	  big-endian), the id (16 bytes), and a CRC-32C over those 25 bytes and
 *	  the profile id (4 bytes, big-endian).  The check ties a token to its
 *	  profile, so one of another profile (or a damaged one) is refused; it
 *	  is no signature: a token only positions a page inside a profile its
 *	  caller may list anyway.  The bytes are the same on every platform.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "port/pg_crc32c.h"

#include "compat.h"
#include "skiptoken.h"

#define TOKEN_FORMAT	1
#define TOKEN_KEY_BYTES	(1 + 8 + UUID_LEN)
#define TOKEN_BYTES		(TOKEN_KEY_BYTES + 4)
/* base64 of TOKEN_BYTES bytes without padding */
#define TOKEN_CHARS		((TOKEN_BYTES * 8 + 5) / 6)

static const char b64url[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The check of a token's key bytes for a profile. */
static uint32
TokenCheck(const unsigned char *key, const char *profile_id)
{
	pg_crc32c	crc;

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, key, TOKEN_KEY_BYTES);
	COMP_CRC32C(crc, profile_id, strlen(profile_id));
	FIN_CRC32C(crc);
	return (uint32) crc;
}

/* Write n bytes of v, big-endian, at p. */
static void
PutBigEndian(unsigned char *p, uint64 v, int n)
{
	for (int i = n - 1; i >= 0; i--)
	{
		p[i] = (unsigned char) (v & 0xFF);
		v >>= 8;
	}
}

/* Read n big-endian bytes at p. */
static uint64
GetBigEndian(const unsigned char *p, int n)
{
	uint64		v = 0;

	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* The $skiptoken that resumes a list of profile_id after key. */
char *
SkiptokenEncode(const char *profile_id, const ListKey *key)
{
	unsigned char raw[TOKEN_BYTES];
	char	   *out = palloc(TOKEN_CHARS + 1);
	int			o = 0;
	uint32		bits = 0;
	int			nbits = 0;

	raw[0] = TOKEN_FORMAT;
	PutBigEndian(raw + 1, (uint64) key->recorded_date_time, 8);
	memcpy(raw + 9, key->id.data, UUID_LEN);
	PutBigEndian(raw + TOKEN_KEY_BYTES, TokenCheck(raw, profile_id), 4);

	for (int i = 0; i < TOKEN_BYTES; i++)
	{
		bits = (bits << 8) | raw[i];
		nbits += 8;
		while (nbits >= 6)
		{
			nbits -= 6;
			out[o++] = b64url[(bits >> nbits) & 0x3F];
		}
	}
	if (nbits > 0)
		out[o++] = b64url[(bits << (6 - nbits)) & 0x3F];
	Assert(o == TOKEN_CHARS);
	out[o] = '\0';
	return out;
}

/* Raise 22023 for a $skiptoken that is not one this module wrote. */
static pg_noreturn void
Malformed(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("malformed skiptoken"),
			 errhint("Pass the $skiptoken of an @odata.nextLink unchanged, or NULL for the first page.")));
}

/*
 * Read a $skiptoken of profile_id into key; 22023 for a malformed one or
 * one of another profile.
 */
void
SkiptokenDecode(const char *profile_id, const char *token, ListKey *key)
{
	unsigned char raw[TOKEN_BYTES];
	int			r = 0;
	uint32		bits = 0;
	int			nbits = 0;

	if (strlen(token) != TOKEN_CHARS)
		Malformed();
	for (const char *p = token; *p; p++)
	{
		const char *c = strchr(b64url, *p);

		if (c == NULL)
			Malformed();
		bits = (bits << 6) | (uint32) (c - b64url);
		nbits += 6;
		if (nbits >= 8)
		{
			nbits -= 8;
			raw[r++] = (unsigned char) ((bits >> nbits) & 0xFF);
		}
	}
	/* the bits past the last byte are zero in a token this module wrote */
	if (r != TOKEN_BYTES || (bits & ((1u << nbits) - 1)) != 0 ||
		raw[0] != TOKEN_FORMAT)
		Malformed();
	if (GetBigEndian(raw + TOKEN_KEY_BYTES, 4) != TokenCheck(raw, profile_id))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("skiptoken does not belong to synchronization profile \"%s\"",
						profile_id),
				 errdetail("It was given for another profile, or it was altered."),
				 errhint("Pass the $skiptoken of an @odata.nextLink of this profile unchanged.")));
	key->recorded_date_time = (TimestampTz) GetBigEndian(raw + 1, 8);
	memcpy(key->id.data, raw + 9, UUID_LEN);
}
