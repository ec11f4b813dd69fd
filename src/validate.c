/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  Validation of an educationSynchronizationError the way Graph validates
 *	  a request body: the profile id, the JSON body's properties and types,
 *	  required fields, length bounds, the DateTimeOffset and the GUID.
 *
 *	  Every refusal is an ERROR with the contract's SQLSTATE that names the
 *	  property by its Graph name; nothing is stored before validation ends.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "parser/scansup.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "validate.h"

/* Longest input value echoed back in an error message. */
#define ECHO_MAX	64

/* Largest UTC offset .NET's DateTimeOffset (and so Graph) accepts: 14:00. */
#define OFFSET_MAX_MINUTES	(14 * 60)

/* The string properties of the resource, with where they go and their bound. */
typedef struct StringProperty
{
	const char *name;			/* Graph name */
	size_t		field;			/* offsetof() in EdusyncError */
	int			max_chars;
	bool		required;
} StringProperty;

static const StringProperty string_properties[] = {
	{"entryType", offsetof(EdusyncError, entry_type), EDUSYNC_STRING_MAX, true},
	{"errorCode", offsetof(EdusyncError, error_code), EDUSYNC_STRING_MAX, true},
	{"errorMessage", offsetof(EdusyncError, error_message), EDUSYNC_MESSAGE_MAX, true},
	{"joiningValue", offsetof(EdusyncError, joining_value), EDUSYNC_STRING_MAX, false},
	{"reportableIdentifier", offsetof(EdusyncError, reportable_identifier), EDUSYNC_STRING_MAX, false},
};

#define FIELD(err, prop)	(*(char **) ((char *) (err) + (prop)->field))

/* The two accepted spellings of @odata.type (compared case-insensitively). */
static const char *const odata_types[] = {
	"#microsoft.graph.educationSynchronizationError",
	"#Microsoft.Education.DataSync.educationSynchronizationError",
};

/* A value shortened for an error message. */
static char *
Echo(const char *value)
{
	int			len = strlen(value);

	if (len <= ECHO_MAX)
		return pstrdup(value);
	len = pg_mbcliplen(value, len, ECHO_MAX);
	return psprintf("%.*s...", len, value);
}

/* The name of a JSON value's type, for error messages. */
static const char *
JsonTypeName(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "array" : "object";
		default:
			return "value";
	}
}

/* Is this string empty or made of white space only? */
static bool
IsBlank(const char *s)
{
	for (; *s; s++)
		if (!scanner_isspace(*s))
			return false;
	return true;
}

/* Read n decimal digits at *p; false if any is not a digit. */
static bool
ReadDigits(const char **p, int n, int *value)
{
	*value = 0;
	for (int i = 0; i < n; i++)
	{
		char		c = (*p)[i];

		if (c < '0' || c > '9')
			return false;
		*value = *value * 10 + (c - '0');
	}
	*p += n;
	return true;
}

/* Raise the contract's 22007 for a recordedDateTime that is not ISO 8601. */
static void
BadDateTime(const char *value, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
			 errmsg("property \"recordedDateTime\" is not a valid date and time: \"%s\"",
					Echo(value)),
			 errdetail("%s", why),
			 errhint("Use ISO 8601 with an offset, for example 2017-07-05T00:52:45Z.")));
}

/*
 * Parse an OData DateTimeOffset:
 *	YYYY-MM-DDThh:mm[:ss[.f{1,7}]](Z|+hh:mm|-hh:mm), T and Z in either case.
 */
static TimestampTz
ParseDateTimeOffset(const char *value)
{
	const char *p = value;
	struct pg_tm tm;
	int			fraction = 0;
	int			offset_min = 0;
	int			offset_hour;
	int			offset_minute;
	TimestampTz result;

	memset(&tm, 0, sizeof(tm));
	if (!ReadDigits(&p, 4, &tm.tm_year) || *p++ != '-' ||
		!ReadDigits(&p, 2, &tm.tm_mon) || *p++ != '-' ||
		!ReadDigits(&p, 2, &tm.tm_mday) || (*p != 'T' && *p != 't'))
		BadDateTime(value, "The date must be written YYYY-MM-DD and followed by T.");
	p++;
	if (!ReadDigits(&p, 2, &tm.tm_hour) || *p++ != ':' ||
		!ReadDigits(&p, 2, &tm.tm_min))
		BadDateTime(value, "The time must be written hh:mm or hh:mm:ss.");
	if (*p == ':')
	{
		p++;
		if (!ReadDigits(&p, 2, &tm.tm_sec))
			BadDateTime(value, "The seconds must have two digits.");
		if (*p == '.')
		{
			int			digits = 0;

			p++;
			while (p[digits] >= '0' && p[digits] <= '9')
				digits++;
			if (digits < 1 || digits > 7)
				BadDateTime(value, "A fraction of a second must have 1 to 7 digits.");
			(void) ReadDigits(&p, digits, &fraction);
			/* scale to 7 digits, i.e. units of 100 ns */
			for (; digits < 7; digits++)
				fraction *= 10;
		}
	}
	if (*p == 'Z' || *p == 'z')
		p++;
	else if (*p == '+' || *p == '-')
	{
		int			sign = (*p++ == '-') ? -1 : 1;

		if (!ReadDigits(&p, 2, &offset_hour) || *p++ != ':' ||
			!ReadDigits(&p, 2, &offset_minute) || offset_minute > 59)
			BadDateTime(value, "An offset must be written +hh:mm or -hh:mm.");
		offset_min = sign * (offset_hour * 60 + offset_minute);
		if (abs(offset_min) > OFFSET_MAX_MINUTES)
			BadDateTime(value, "An offset must lie between -14:00 and +14:00.");
	}
	else
		BadDateTime(value, "The time must end with Z or an offset such as +02:00.");
	if (*p != '\0')
		BadDateTime(value, "Unexpected characters follow the offset.");

	if (tm.tm_year < 1 || tm.tm_mon < 1 || tm.tm_mon > MONTHS_PER_YEAR ||
		tm.tm_mday < 1 || tm.tm_mday > day_tab[isleap(tm.tm_year)][tm.tm_mon - 1] ||
		tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 59)
		BadDateTime(value, "No such date or time exists.");

	/* PostgreSQL counts offsets in seconds west of Greenwich */
	offset_min = -offset_min;
	{
		int			tz = offset_min * SECS_PER_MINUTE;

		if (tm2timestamp(&tm, 0, &tz, &result) != 0)
			BadDateTime(value, "The date is out of range.");
	}
	/* PostgreSQL keeps microseconds: the seventh digit is dropped */
	result += fraction / 10;
	return result;
}

/*
 * Parse a GUID in its canonical 8-4-4-4-12 form (hex digits in either case);
 * 22P02 for anything else.
 */
static void
ParseGuid(const char *value, pg_uuid_t *id)
{
	static const char layout[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	int			i;

	for (i = 0; layout[i] != '\0'; i++)
	{
		char		c = value[i];

		if (layout[i] == '-' ? c != '-' : !isxdigit((unsigned char) c))
			break;
	}
	if (layout[i] != '\0' || value[i] != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("property \"id\" is not a GUID: \"%s\"", Echo(value)),
				 errhint("Write it as 8-4-4-4-12 hexadecimal digits, or leave it out to have one generated.")));
	memcpy(id, DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(value))),
		   sizeof(pg_uuid_t));
}

/* Check @odata.type against the two accepted spellings. */
static void
CheckODataType(const JsonbValue *v)
{
	if (v->type == jbvString)
	{
		for (int i = 0; i < lengthof(odata_types); i++)
			if (v->val.string.len == strlen(odata_types[i]) &&
				pg_strncasecmp(v->val.string.val, odata_types[i],
							   v->val.string.len) == 0)
				return;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unsupported @odata.type \"%s\"",
						Echo(pnstrdup(v->val.string.val, v->val.string.len))),
				 errdetail("The resource's type is %s.", odata_types[0])));
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("annotation \"@odata.type\" must be a string, not a JSON %s",
					JsonTypeName(v))));
}

/* The text of a property that must be a string or null; NULL for null. */
static char *
StringValue(const char *name, const JsonbValue *v)
{
	if (v->type == jbvNull)
		return NULL;
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("property \"%s\" must be a string, not a JSON %s",
						name, JsonTypeName(v))));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * Refuse text that cannot be sent to Graph as UTF-8 (22021).  Only a
 * SQL_ASCII database can hold such text: the server checks every other
 * encoding on input, and each of them converts to UTF-8.
 */
static void
CheckSendable(const char *what, const char *value)
{
	if (GetDatabaseEncoding() == PG_SQL_ASCII &&
		!pg_verify_mbstr(PG_UTF8, value, strlen(value), true))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("%s is not valid UTF-8", what),
				 errdetail("Graph takes UTF-8 only, and this database's encoding is SQL_ASCII, which does not check its bytes."),
				 errhint("Send the text encoded in UTF-8.")));
}

/*
 * Refuse an empty profile id, one longer than the bound, or one holding
 * control characters (C0, DEL, C1).
 */
void
ValidateProfileId(const char *profile_id)
{
	int			len = strlen(profile_id);
	const unsigned char *p;

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("profile id must not be empty")));
	CheckSendable("profile id", profile_id);
	if (pg_mbstrlen_with_len(profile_id, len) > EDUSYNC_PROFILE_ID_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("profile id is too long"),
				 errdetail("A profile id has at most %d characters.",
						   EDUSYNC_PROFILE_ID_MAX)));
	for (p = (const unsigned char *) profile_id; *p; p++)
	{
		/* C1 controls U+0080..U+009F are encoded C2 80..C2 9F in UTF-8 */
		bool		c1 = (GetDatabaseEncoding() == PG_UTF8 &&
						  p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F);

		if (*p < 0x20 || *p == 0x7F || c1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("profile id must not contain control characters")));
	}
}

/*
 * Read a Graph request body into err: only the resource's properties and
 * instance annotations, each of the right JSON type.  Required fields and
 * bounds are left to ValidateFields, shared with the typed entry point.
 */
void
ValidateBody(Jsonb *body, EdusyncError *err)
{
	if (!JB_ROOT_IS_OBJECT(body) || JB_ROOT_IS_SCALAR(body))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("request body must be a JSON object")));
	ValidateBodyContainer(&body->root, err);
}

/*
 * ValidateBody of a body that is a JSON object inside another document (an
 * element of create_sync_errors' array).
 */
void
ValidateBodyContainer(JsonbContainer *body, EdusyncError *err)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	Assert(JsonContainerIsObject(body));
	it = JsonbIteratorInit(body);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *name;
		int			i;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(v.val.string.val, v.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);

		if (name[0] == '@')
		{
			/* instance annotations are allowed; only @odata.type is checked */
			if (strcmp(name, "@odata.type") == 0)
				CheckODataType(&v);
			continue;
		}
		if (strcmp(name, "id") == 0)
		{
			char	   *id = StringValue(name, &v);

			err->id_given = (id != NULL);
			if (id)
				ParseGuid(id, &err->id);
			continue;
		}
		if (strcmp(name, "recordedDateTime") == 0)
		{
			char	   *when = StringValue(name, &v);

			err->recorded_given = (when != NULL);
			if (when)
				err->recorded_date_time = ParseDateTimeOffset(when);
			continue;
		}
		for (i = 0; i < lengthof(string_properties); i++)
			if (strcmp(name, string_properties[i].name) == 0)
				break;
		if (i == lengthof(string_properties))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("property \"%s\" does not exist on educationSynchronizationError",
							Echo(name))));
		FIELD(err, &string_properties[i]) = StringValue(name, &v);
	}
}

/*
 * Checks shared by both entry points: required strings present and not
 * blank, every string within its bound, recordedDateTime finite and within
 * the years 1 to 9999.
 */
void
ValidateFields(EdusyncError *err)
{
	for (int i = 0; i < lengthof(string_properties); i++)
	{
		const StringProperty *prop = &string_properties[i];
		const char *value = FIELD(err, prop);
		int			chars;

		if (value == NULL)
		{
			if (prop->required)
				ereport(ERROR,
						(errcode(ERRCODE_NOT_NULL_VIOLATION),
						 errmsg("property \"%s\" is required", prop->name)));
			continue;
		}
		CheckSendable(psprintf("property \"%s\"", prop->name), value);
		if (prop->required && IsBlank(value))
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("property \"%s\" must not be blank", prop->name)));
		chars = pg_mbstrlen_with_len(value, strlen(value));
		if (chars > prop->max_chars)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("property \"%s\" is too long", prop->name),
					 errdetail("It has %d characters; at most %d are allowed.",
							   chars, prop->max_chars)));
	}

	if (err->recorded_given)
	{
		struct pg_tm tm;
		fsec_t		fsec;

		if (TIMESTAMP_NOT_FINITE(err->recorded_date_time))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
					 errmsg("property \"recordedDateTime\" must be a finite date and time")));
		if (timestamp2tm(err->recorded_date_time, NULL, &tm, &fsec, NULL, NULL) != 0 ||
			tm.tm_year < 1 || tm.tm_year > 9999)
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
					 errmsg("property \"recordedDateTime\" is out of range"),
					 errdetail("Graph accepts the years 0001 to 9999, in UTC.")));
	}
}
