package main

// Privileges as vCenter computes them. vcsim keeps the roles and permissions a client sets
// (AddAuthorizationRole, SetEntityPermissions) but answers every privilege question with
// "everything": FetchUserPrivilegeOnEntities returns the Admin role's privileges for any
// user on any object, and its privilegeList is empty. authz answers from what was set
// instead, as vCenter does: on an object, the permission for the user set on the object
// itself or, failing that, the nearest one up the inventory that propagates, gives its
// role's privileges; with none, the user holds nothing. Group permissions are not
// evaluated (vcsim has no group membership). A user name matches in either form vCenter
// writes it ("user@vsphere.local", "VSPHERE.LOCAL\user") and in any case.

import (
	"context"
	"fmt"
	"strings"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

type authz struct {
	*simulator.AuthorizationManager
}

// installAuthz puts authz in place of the model's AuthorizationManager and fills its
// privilegeList with every privilege the Admin role holds.
func installAuthz(m *simulator.Model) {
	reg := m.Map()
	ref := *m.ServiceContent.AuthorizationManager
	inner := reg.Get(ref).(*simulator.AuthorizationManager)
	admin := object.AuthorizationRoleList(inner.RoleList).ByName("Admin")
	inner.PrivilegeList = nil
	for _, id := range admin.Privilege {
		group := id
		if i := strings.LastIndex(id, "."); i > 0 {
			group = id[:i]
		}
		inner.PrivilegeList = append(inner.PrivilegeList, types.AuthorizationPrivilege{
			PrivId: id, Name: id[len(group)+1:], PrivGroupName: group,
		})
	}
	// In the registry itself: a session looks objects up there after any Handler hook.
	reg.Put(&authz{inner})
}

// grantAdmin gives user the Admin role on the root folder, propagating, beside the
// permissions already there: what the test vCenters' own user holds unless a test takes
// something away.
func grantAdmin(ctx context.Context, c *govmomi.Client, user string) error {
	am := object.NewAuthorizationManager(c.Client)
	root := c.ServiceContent.RootFolder
	perms, err := am.RetrieveEntityPermissions(ctx, root, false)
	if err != nil {
		return err
	}
	for _, p := range perms {
		if !p.Group && sameUser(p.Principal, user) {
			return nil
		}
	}
	perms = append(perms, types.Permission{Entity: &root, Principal: user, RoleId: -1, Propagate: true})
	return am.SetEntityPermissions(ctx, root, perms)
}

func normalUser(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if domain, user, ok := strings.Cut(name, `\`); ok {
		return user + "@" + domain
	}
	return name
}

func sameUser(a, b string) bool {
	a, b = normalUser(a), normalUser(b)
	if a == b {
		return true
	}
	// A bare name and its vsphere.local form are the same SSO user.
	return a+"@vsphere.local" == b || a == b+"@vsphere.local"
}

// SetEntityPermissions records which object each permission was set on, so privileges
// can tell a permission on the object from one it inherits.
func (a *authz) SetEntityPermissions(req *types.SetEntityPermissions) soap.HasFault {
	for i := range req.Permission {
		e := req.Entity
		req.Permission[i].Entity = &e
	}
	return a.AuthorizationManager.SetEntityPermissions(req)
}

func (a *authz) own(ctx *simulator.Context, e types.ManagedObjectReference) []types.Permission {
	body := a.AuthorizationManager.RetrieveEntityPermissions(ctx, &types.RetrieveEntityPermissions{Entity: e})
	return body.(*methods.RetrieveEntityPermissionsBody).Res.Returnval
}

// privileges the user holds on e: the role of the nearest permission that applies.
func (a *authz) privileges(ctx *simulator.Context, e types.ManagedObjectReference, user string) []string {
	for depth := 0; ; depth++ {
		obj := ctx.Map.Get(e)
		if obj == nil {
			return nil
		}
		for _, p := range a.own(ctx, e) {
			if p.Group || !sameUser(p.Principal, user) || (depth > 0 && !p.Propagate) {
				continue
			}
			if role := object.AuthorizationRoleList(a.RoleList).ById(p.RoleId); role != nil {
				return role.Privilege
			}
			return nil
		}
		me, ok := obj.(mo.Entity)
		if !ok || me.Entity().Parent == nil {
			return nil
		}
		e = *me.Entity().Parent
	}
}

func (a *authz) FetchUserPrivilegeOnEntities(ctx *simulator.Context, req *types.FetchUserPrivilegeOnEntities) soap.HasFault {
	var res []types.UserPrivilegeResult
	for _, e := range req.Entities {
		res = append(res, types.UserPrivilegeResult{Entity: e, Privileges: a.privileges(ctx, e, req.UserName)})
	}
	return &methods.FetchUserPrivilegeOnEntitiesBody{
		Res: &types.FetchUserPrivilegeOnEntitiesResponse{Returnval: res},
	}
}

func (a *authz) HasUserPrivilegeOnEntities(ctx *simulator.Context, req *types.HasUserPrivilegeOnEntities) soap.HasFault {
	var res []types.EntityPrivilege
	for _, e := range req.Entities {
		held := map[string]bool{}
		for _, p := range a.privileges(ctx, e, req.UserName) {
			held[p] = true
		}
		ep := types.EntityPrivilege{Entity: e}
		for _, id := range req.PrivId {
			ep.PrivAvailability = append(ep.PrivAvailability, types.PrivilegeAvailability{PrivId: id, IsGranted: held[id]})
		}
		res = append(res, ep)
	}
	return &methods.HasUserPrivilegeOnEntitiesBody{
		Res: &types.HasUserPrivilegeOnEntitiesResponse{Returnval: res},
	}
}

// restrict gives user, on the object at path (and what inherits from it), a role with
// every Admin privilege except those named: how a test takes privileges away.
func restrict(ctx context.Context, c *govmomi.Client, path, user string, without []string) error {
	ref, err := object.NewSearchIndex(c.Client).FindByInventoryPath(ctx, path)
	if err != nil {
		return err
	}
	if ref == nil {
		return fmt.Errorf("no object at %s", path)
	}
	am := object.NewAuthorizationManager(c.Client)
	roles, err := am.RoleList(ctx)
	if err != nil {
		return err
	}
	drop := map[string]bool{}
	for _, id := range without {
		drop[id] = true
	}
	var keep []string
	for _, id := range roles.ByName("Admin").Privilege {
		if !drop[id] {
			keep = append(keep, id)
		}
	}
	name := "admin-without-" + strings.Join(without, "+")
	if roles.ByName(name) == nil {
		// vcsim's AddAuthorizationRole answers no id: read it back by name.
		if _, err := am.AddRole(ctx, name, keep); err != nil {
			return err
		}
		if roles, err = am.RoleList(ctx); err != nil {
			return err
		}
	}
	id := roles.ByName(name).RoleId
	e := ref.Reference()
	perms, err := am.RetrieveEntityPermissions(ctx, e, false)
	if err != nil {
		return err
	}
	var others []types.Permission
	for _, p := range perms {
		if p.Group || !sameUser(p.Principal, user) {
			others = append(others, p)
		}
	}
	others = append(others, types.Permission{Entity: &e, Principal: user, RoleId: id, Propagate: true})
	return am.SetEntityPermissions(ctx, e, others)
}
