/* Role names <-> the sb.member.Role enum, and the id shape check. */
#include <string.h>

#include "auth.h"
#include "sb/util.h"

const char *auth_role_name(Sb__Member__Role r)
{
    switch (r) {
    case SB__MEMBER__ROLE__USER: return "USER";
    case SB__MEMBER__ROLE__PLANNER: return "PLANNER";
    case SB__MEMBER__ROLE__ADMIN: return "ADMIN";
    default: return NULL;
    }
}

Sb__Member__Role auth_role_from_name(const char *name)
{
    if (!name)
        return SB__MEMBER__ROLE__ROLE_UNSPECIFIED;
    if (!strcmp(name, "USER"))
        return SB__MEMBER__ROLE__USER;
    if (!strcmp(name, "PLANNER"))
        return SB__MEMBER__ROLE__PLANNER;
    if (!strcmp(name, "ADMIN"))
        return SB__MEMBER__ROLE__ADMIN;
    return SB__MEMBER__ROLE__ROLE_UNSPECIFIED;
}

bool auth_is_uuid(const char *s)
{
    if (!s || strlen(s) != SB_UUID_LEN)
        return false;
    for (int i = 0; i < SB_UUID_LEN; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]))
            return false;
    }
    return true;
}
