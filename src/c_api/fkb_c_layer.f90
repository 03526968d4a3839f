!! Custom layers from C and C++ (include/fkb/fkb.h, "Custom layers"): a host registers a table
!! of callbacks under a layer type name with fkb_register_layer_callbacks; every layer of that
!! type in a model file becomes a `c_callback_layer`, an ordinary extension of fkb_layer_t
!! that calls the callbacks.
!!
!! * Registration copies the table into a module-level list keyed by the type name and
!!   registers a mold with fkb_register_layer (same name rules). A mold's component values are
!!   not copied into the layers made from it, so `configure` looks the table up by the layer's
!!   `type_name` and keeps its own copy: registering the name again later changes new loads,
!!   never layers already loaded.
!! * `configure` hands the callback an fkb_layer_context (a `ctx_t` here) through which it reads
!!   options, shapes and the precision, sets the output shape and declares tensors. The options
!!   it read are kept, in file order, and `options` writes them back verbatim (byte-identical
!!   round trip). Everything that can still fail after the instance is made (unread options,
!!   sizes) is checked here, so that a layer that leaves configure successfully always ends up
!!   in the model, where the network releases it.
!! * Instance lifetime: the model copies layer objects while loading (growing its array, the
!!   network's `self%model = model`), so neither a finalizer nor a plain pointer can tell the
!!   last copy. Instead `destroy` runs only from fkb_layer_t%release, which the network calls
!!   once per layer it drops (freed, reloaded, or a failed load); a failing configure destroys
!!   its own instance. The instance is also entered in a module-level table (slot + serial
!!   number, under a lock) so that a second release through a stale copy is a no-op.
module fkb_c_layer
  use iso_c_binding, only: c_ptr, c_funptr, c_int, c_int64_t, c_char, c_size_t, c_null_ptr, &
                           c_null_funptr, c_null_char, c_associated, c_f_pointer, &
                           c_f_procpointer, c_loc, c_float, c_double
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK, FKB_ERR_ARGUMENT, FKB_ERR_FORMAT, FKB_ERR_UNSUPPORTED, &
                        FKB_ERR_INTERNAL, FKB_ERR_SHAPE, set_error, fkb_layer_fail
  use fkb_layer, only: fkb_layer_t
  use fkb_config, only: fkb_config_t, int_text
  use fkb_tensor, only: fkb_tensor_t, FKB_FLOAT32, FKB_FLOAT64
  use fkb_layer_registry, only: fkb_register_layer
  use fkb_blas, only: BLAS_INT_MAX
  implicit none
  private
  public :: c_callback_layer

  integer, parameter :: MAX_TENSORS = 64     !! tensors per layer (forward keeps them on the stack)
  integer, parameter :: MAX_RANK = 16
  integer, parameter :: ERR_CAP = 1024       !! bytes of the error buffer handed to forward

  !> fkb_layer_callbacks of fkb.h, field for field.
  type, bind(c) :: callbacks_t
    type(c_funptr) :: configure = c_null_funptr
    type(c_funptr) :: forward = c_null_funptr
    type(c_funptr) :: destroy = c_null_funptr
    type(c_funptr) :: backward = c_null_funptr
  end type callbacks_t

  type :: table_t
    character(len=:), allocatable :: name
    type(callbacks_t) :: cb
    type(c_ptr) :: user = c_null_ptr
  end type table_t

  !> Registered types (register before loading, like fkb_register_layer: not thread-safe).
  type(table_t), allocatable, save :: tables(:)

  type :: instance_t
    type(c_ptr) :: p = c_null_ptr
    type(c_funptr) :: destroy = c_null_funptr
    integer(int64) :: serial = 0             !! 0: free slot
  end type instance_t

  !> Live instances that have a destroy callback (guarded by critical fkb_c_layer_instances).
  type(instance_t), allocatable, save :: instances(:)
  integer(int64), save :: last_serial = 0

  type, extends(fkb_layer_t) :: c_callback_layer
    type(callbacks_t) :: cb
    type(c_ptr) :: user = c_null_ptr
    type(c_ptr) :: instance = c_null_ptr
    integer :: slot = 0
    integer(int64) :: serial = 0
    type(fkb_config_t) :: opts           !! the options configure read, in file order
  contains
    procedure :: configure => cl_configure
    procedure :: options => cl_options
    procedure :: forward_r32 => cl_forward_r32
    procedure :: forward_r64 => cl_forward_r64
    procedure :: supports_training => cl_supports_training
    procedure :: backward_r32 => cl_backward_r32
    procedure :: backward_r64 => cl_backward_r64
    procedure :: release => cl_release
  end type c_callback_layer

  !> What configure's callback sees through fkb_layer_context (valid during configure only).
  type :: cstr_t
    character(kind=c_char), pointer :: s(:) => null()
  end type cstr_t
  type :: decl_t
    character(len=:), allocatable :: name
    integer(int64), allocatable :: dims(:)
  end type decl_t
  type :: ctx_t
    type(fkb_config_t) :: cfg
    character(len=:), allocatable :: name
    integer(int64), allocatable :: in_shape(:), out_shape(:)
    integer :: dtype = FKB_FLOAT32
    type(decl_t), allocatable :: decls(:)
    type(cstr_t), allocatable :: strings(:)   !! returned C strings, freed after configure
    integer :: n_strings = 0
    character(len=:), allocatable :: error    !! fkb_layer_set_error's text
    integer :: refused = FKB_OK                !! a context call was refused (and why: error)
    character(len=:), allocatable :: refusal
  end type ctx_t

  abstract interface
    integer(c_int) function configure_cb(ctx, user, instance) bind(c)
      import :: c_int, c_ptr
      type(c_ptr), value :: ctx, user, instance
    end function configure_cb
    integer(c_int) function forward32_cb(instance, dtype, x, y, batch, tensors, err, cap) bind(c)
      import :: c_int, c_ptr, c_float, c_int64_t, c_char, c_size_t
      type(c_ptr), value :: instance
      integer(c_int), value :: dtype
      real(c_float), intent(in) :: x(*)
      real(c_float), intent(inout) :: y(*)
      integer(c_int64_t), value :: batch
      type(c_ptr), intent(in) :: tensors(*)
      character(kind=c_char), intent(inout) :: err(*)
      integer(c_size_t), value :: cap
    end function forward32_cb
    integer(c_int) function forward64_cb(instance, dtype, x, y, batch, tensors, err, cap) bind(c)
      import :: c_int, c_ptr, c_double, c_int64_t, c_char, c_size_t
      type(c_ptr), value :: instance
      integer(c_int), value :: dtype
      real(c_double), intent(in) :: x(*)
      real(c_double), intent(inout) :: y(*)
      integer(c_int64_t), value :: batch
      type(c_ptr), intent(in) :: tensors(*)
      character(kind=c_char), intent(inout) :: err(*)
      integer(c_size_t), value :: cap
    end function forward64_cb
    integer(c_int) function backward_cb(instance, dtype, x, y, dy, dx, batch, tensors, grads, &
                                        err, cap) bind(c)
      import :: c_int, c_ptr, c_int64_t, c_char, c_size_t
      type(c_ptr), value :: instance, x, y, dy, dx
      integer(c_int), value :: dtype
      integer(c_int64_t), value :: batch
      type(c_ptr), intent(in) :: tensors(*), grads(*)
      character(kind=c_char), intent(inout) :: err(*)
      integer(c_size_t), value :: cap
    end function backward_cb
    subroutine destroy_cb(instance) bind(c)
      import :: c_ptr
      type(c_ptr), value :: instance
    end subroutine destroy_cb
  end interface

  interface
    subroutine c_set_last_error(msg, n) bind(c, name='fkb_c_set_last_error')
      import :: c_char, c_size_t
      character(kind=c_char), intent(in) :: msg(*)
      integer(c_size_t), value :: n
    end subroutine c_set_last_error
    pure integer(c_size_t) function c_strlen(s) bind(c, name='strlen')
      import :: c_ptr, c_size_t
      type(c_ptr), value, intent(in) :: s
    end function c_strlen
  end interface

contains

  ! ---- registration (C API) ----

  integer(c_int) function c_register_layer_callbacks(name, callbacks, user) &
      bind(c, name='fkb_register_layer_callbacks')
    type(c_ptr), value :: name, callbacks, user
    type(callbacks_t), pointer :: cb
    type(c_callback_layer) :: mold
    type(table_t), allocatable :: grown(:)
    character(len=:), allocatable :: nm
    character(len=1024) :: msg
    integer :: stat, i
    if (.not. c_associated(name) .or. .not. c_associated(callbacks)) then
      c_register_layer_callbacks = fail(FKB_ERR_ARGUMENT, &
                                        'fkb_register_layer_callbacks: NULL argument')
      return
    end if
    nm = c_string(name)
    call c_f_pointer(callbacks, cb)
    if (.not. c_associated(cb%configure) .or. .not. c_associated(cb%forward)) then
      c_register_layer_callbacks = fail(FKB_ERR_ARGUMENT, "fkb_register_layer_callbacks: '" &
                                        // nm // "' needs configure and forward callbacks")
      return
    end if
    msg = ''
    call fkb_register_layer(nm, mold, stat=stat, errmsg=msg)
    if (stat /= FKB_OK) then
      c_register_layer_callbacks = fail(stat, 'fkb_register_layer_callbacks: ' // trim(msg))
      return
    end if
    if (.not. allocated(tables)) allocate(tables(0))
    i = find_table(nm)
    if (i == 0) then
      allocate(grown(size(tables) + 1))
      grown(1:size(tables)) = tables
      i = size(grown)
      grown(i)%name = nm
      call move_alloc(grown, tables)
    end if
    tables(i)%cb = cb
    tables(i)%user = user
    c_register_layer_callbacks = FKB_OK
  end function c_register_layer_callbacks

  integer function find_table(name)
    character(len=*), intent(in) :: name
    integer :: i
    find_table = 0
    if (.not. allocated(tables)) return
    do i = 1, size(tables)
      if (tables(i)%name == name) then
        find_table = i
        return
      end if
    end do
  end function find_table

  ! ---- the layer ----

  subroutine cl_configure(self, cfg, stat, msg)
    class(c_callback_layer), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    type(ctx_t), target :: ctx
    type(c_ptr), target :: inst
    procedure(configure_cb), pointer :: fn
    character(len=:), allocatable :: unused
    character(len=64), allocatable :: names(:)
    integer(int64), allocatable :: shapes(:, :)
    integer :: i, k, rc, r
    stat = FKB_OK
    i = find_table(self%type_name)
    if (i == 0) then
      call set_error(stat, msg, FKB_ERR_INTERNAL, cfg%where // ': no callbacks registered')
      return
    end if
    self%cb = tables(i)%cb
    self%user = tables(i)%user
    ! The callback works on a copy of cfg (a dummy argument cannot be pointed to); the copy's
    ! "used" marks come back below.
    ctx%cfg = cfg
    ctx%name = self%name
    ctx%in_shape = self%in_shapes(1)%d
    ctx%dtype = self%dtype
    allocate(ctx%decls(0), ctx%strings(8))
    ctx%error = ''
    ctx%refusal = ''
    inst = c_null_ptr
    call c_f_procpointer(self%cb%configure, fn)
    rc = fn(c_loc(ctx), self%user, c_loc(inst))
    cfg = ctx%cfg
    do k = 1, ctx%n_strings
      deallocate(ctx%strings(k)%s)
    end do
    if (rc /= 0) then
      if (len(ctx%error) == 0) ctx%error = 'configure failed (returned ' // &
                                           int_text(int(rc, int64)) // ')'
      call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': ' // ctx%error)
    else if (ctx%refused /= FKB_OK) then
      call set_error(stat, msg, ctx%refused, cfg%where // ': ' // ctx%refusal)
    else
      unused = cfg%unused_key()
      if (len(unused) > 0) call set_error(stat, msg, FKB_ERR_UNSUPPORTED, cfg%where // &
                                          ": unknown option '" // unused // "'")
    end if
    if (allocated(ctx%out_shape)) then
      self%out_shape = ctx%out_shape
    else
      self%out_shape = ctx%in_shape
    end if
    self%n_out = product(self%out_shape)
    if (stat == FKB_OK .and. self%n_out > BLAS_INT_MAX) &
      call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': output width out of range')
    if (stat /= FKB_OK) then
      if (c_associated(inst)) call call_destroy(self%cb%destroy, inst)
      return
    end if
    self%instance = inst
    if (c_associated(inst) .and. c_associated(self%cb%destroy)) call track(self)
    ! The options the callback read, in file order (the model's own keys excluded).
    ! (whole items are copied, so that whatever a kv item records besides key and value
    ! comes back unchanged in `options`)
    self%opts = cfg
    r = 0
    do k = 1, self%opts%n
      select case (self%opts%items(k)%key)
      case ('inputs', 'trainable', 'time_distributed')
        cycle
      end select
      if (.not. self%opts%items(k)%used) cycle
      r = r + 1
      if (r /= k) self%opts%items(r) = self%opts%items(k)
    end do
    self%opts%n = r
    if (size(ctx%decls) > 0) then
      r = 1
      do k = 1, size(ctx%decls)
        r = max(r, size(ctx%decls(k)%dims))
      end do
      allocate(names(size(ctx%decls)), shapes(r, size(ctx%decls)))
      shapes = -1
      do k = 1, size(ctx%decls)
        names(k) = ctx%decls(k)%name
        shapes(1:size(ctx%decls(k)%dims), k) = ctx%decls(k)%dims
      end do
      call self%declare_params(names, shapes)
    end if
  end subroutine cl_configure

  subroutine track(self)
    ! Enters the layer's instance in the table of live instances.
    class(c_callback_layer), intent(inout) :: self
    type(instance_t), allocatable :: grown(:)
    integer :: k
    !$omp critical (fkb_c_layer_instances)
    if (.not. allocated(instances)) allocate(instances(16))
    k = findloc(instances%serial, 0_int64, dim=1)
    if (k == 0) then
      allocate(grown(2 * size(instances)))
      grown(1:size(instances)) = instances
      k = size(instances) + 1
      call move_alloc(grown, instances)
    end if
    last_serial = last_serial + 1
    instances(k) = instance_t(self%instance, self%cb%destroy, last_serial)
    self%slot = k
    self%serial = last_serial
    !$omp end critical (fkb_c_layer_instances)
  end subroutine track

  subroutine cl_release(self)
    !! Destroys the instance, once (a copy whose instance was already destroyed does nothing).
    class(c_callback_layer), intent(inout) :: self
    type(c_ptr) :: p
    type(c_funptr) :: d
    p = c_null_ptr
    d = c_null_funptr
    !$omp critical (fkb_c_layer_instances)
    if (self%slot > 0 .and. allocated(instances)) then
      if (self%slot <= size(instances)) then
        if (instances(self%slot)%serial == self%serial) then
          p = instances(self%slot)%p
          d = instances(self%slot)%destroy
          instances(self%slot) = instance_t()
        end if
      end if
    end if
    !$omp end critical (fkb_c_layer_instances)
    self%slot = 0
    self%serial = 0
    self%instance = c_null_ptr
    if (c_associated(p) .and. c_associated(d)) call call_destroy(d, p)
  end subroutine cl_release

  subroutine call_destroy(d, p)
    type(c_funptr), intent(in) :: d
    type(c_ptr), intent(in) :: p
    procedure(destroy_cb), pointer :: fn
    if (.not. c_associated(d)) return
    call c_f_procpointer(d, fn)
    call fn(p)
  end subroutine call_destroy

  subroutine cl_options(self, cfg)
    class(c_callback_layer), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer :: k, j
    do k = 1, self%opts%n
      call cfg%set(self%opts%items(k)%key, self%opts%items(k)%value)
      j = cfg%n
      if (j > 0) then
        if (cfg%items(j)%key == self%opts%items(k)%key) cfg%items(j) = self%opts%items(k)
      end if
    end do
  end subroutine cl_options

  subroutine cl_forward_r32(self, x, y)
    class(c_callback_layer), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    type(c_ptr) :: tp(MAX_TENSORS)
    character(kind=c_char) :: err(ERR_CAP)
    procedure(forward32_cb), pointer :: fn
    integer :: k
    integer(c_int) :: rc
    tp(1) = c_null_ptr
    if (allocated(self%params)) then
      do k = 1, size(self%params)
        tp(k) = addr32(self%params(k)%r32)
      end do
    end if
    err(1) = c_null_char
    call c_f_procpointer(self%cb%forward, fn)
    rc = fn(self%instance, int(FKB_FLOAT32, c_int), x, y, size(x, 2, int64), tp, err, &
            int(ERR_CAP, c_size_t))
    if (rc /= 0) call forward_failed(self, rc, err)
  end subroutine cl_forward_r32

  subroutine cl_forward_r64(self, x, y)
    class(c_callback_layer), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    type(c_ptr) :: tp(MAX_TENSORS)
    character(kind=c_char) :: err(ERR_CAP)
    procedure(forward64_cb), pointer :: fn
    integer :: k
    integer(c_int) :: rc
    tp(1) = c_null_ptr
    if (allocated(self%params)) then
      do k = 1, size(self%params)
        tp(k) = addr64(self%params(k)%r64)
      end do
    end if
    err(1) = c_null_char
    call c_f_procpointer(self%cb%forward, fn)
    rc = fn(self%instance, int(FKB_FLOAT64, c_int), x, y, size(x, 2, int64), tp, err, &
            int(ERR_CAP, c_size_t))
    if (rc /= 0) call forward_failed(self, rc, err)
  end subroutine cl_forward_r64

  subroutine forward_failed(self, rc, err)
    ! Records a callback's failure for the running predict (FKB_ERR_LAYER).
    class(c_callback_layer), intent(in) :: self
    integer(c_int), intent(in) :: rc
    character(kind=c_char), intent(in) :: err(ERR_CAP)
    character(len=ERR_CAP) :: text
    integer :: n
    err_text: block
      text = ''
      do n = 1, ERR_CAP - 1
        if (err(n) == c_null_char) exit
        text(n:n) = err(n)
      end do
    end block err_text
    if (len_trim(text) == 0) then
      call fkb_layer_fail("layer '" // self%name // "' (" // self%type_name // &
                          '): failed (returned ' // int_text(int(rc, int64)) // ')')
    else
      call fkb_layer_fail("layer '" // self%name // "' (" // self%type_name // '): ' // &
                          trim(text))
    end if
  end subroutine forward_failed

  logical function cl_supports_training(self)
    class(c_callback_layer), intent(in) :: self
    cl_supports_training = c_associated(self%cb%backward)
  end function cl_supports_training

  subroutine cl_backward_r32(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    class(c_callback_layer), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real32), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    type(c_ptr) :: tp(MAX_TENSORS), gp(MAX_TENSORS), dxp
    integer :: k
    tp(1) = c_null_ptr
    gp(1) = c_null_ptr
    if (allocated(self%params)) then
      do k = 1, size(self%params)
        tp(k) = addr32(self%params(k)%r32)
        gp(k) = addr32(grads(k)%r32)
      end do
    end if
    dxp = c_null_ptr
    if (need_dx) dxp = addr32_2d(dx)
    call run_backward(self, FKB_FLOAT32, addr32_2d(x), addr32_2d(y), addr32_2d(dy), dxp, &
                      size(x, 2, int64), tp, gp)
  end subroutine cl_backward_r32

  subroutine cl_backward_r64(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    class(c_callback_layer), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real64), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    type(c_ptr) :: tp(MAX_TENSORS), gp(MAX_TENSORS), dxp
    integer :: k
    tp(1) = c_null_ptr
    gp(1) = c_null_ptr
    if (allocated(self%params)) then
      do k = 1, size(self%params)
        tp(k) = addr64(self%params(k)%r64)
        gp(k) = addr64(grads(k)%r64)
      end do
    end if
    dxp = c_null_ptr
    if (need_dx) dxp = addr64_2d(dx)
    call run_backward(self, FKB_FLOAT64, addr64_2d(x), addr64_2d(y), addr64_2d(dy), dxp, &
                      size(x, 2, int64), tp, gp)
  end subroutine cl_backward_r64

  subroutine run_backward(self, dtype, x, y, dy, dx, batch, tp, gp)
    class(c_callback_layer), intent(in) :: self
    integer, intent(in) :: dtype
    type(c_ptr), intent(in) :: x, y, dy, dx, tp(:), gp(:)
    integer(int64), intent(in) :: batch
    character(kind=c_char) :: err(ERR_CAP)
    procedure(backward_cb), pointer :: fn
    integer(c_int) :: rc
    if (.not. c_associated(self%cb%backward)) return
    err(1) = c_null_char
    call c_f_procpointer(self%cb%backward, fn)
    rc = fn(self%instance, int(dtype, c_int), x, y, dy, dx, batch, tp, gp, err, &
            int(ERR_CAP, c_size_t))
    if (rc /= 0) call forward_failed(self, rc, err)
  end subroutine run_backward

  ! The address of an array's data: x, y, the tensors are dummies or components without the
  ! TARGET attribute, so c_loc takes them through a TARGET dummy (no copy: contiguous).
  type(c_ptr) function addr32_2d(a)
    real(real32), intent(in), target, contiguous :: a(:, :)
    addr32_2d = c_loc(a)
  end function addr32_2d

  type(c_ptr) function addr64_2d(a)
    real(real64), intent(in), target, contiguous :: a(:, :)
    addr64_2d = c_loc(a)
  end function addr64_2d

  type(c_ptr) function addr32(a)
    real(real32), intent(in), target, contiguous :: a(:)
    addr32 = c_loc(a)
  end function addr32

  type(c_ptr) function addr64(a)
    real(real64), intent(in), target, contiguous :: a(:)
    addr64 = c_loc(a)
  end function addr64

  ! ---- fkb_layer_context (C API, during configure) ----

  logical function get_ctx(p, ctx)
    type(c_ptr), intent(in) :: p
    type(ctx_t), pointer, intent(out) :: ctx
    ctx => null()
    get_ctx = c_associated(p)
    if (get_ctx) call c_f_pointer(p, ctx)
  end function get_ctx

  type(c_ptr) function keep(ctx, text)
    ! A NUL-terminated copy of text owned by the context (valid until configure returns).
    type(ctx_t), intent(inout) :: ctx
    character(len=*), intent(in) :: text
    type(cstr_t), allocatable :: grown(:)
    integer :: i
    if (ctx%n_strings == size(ctx%strings)) then
      allocate(grown(2 * size(ctx%strings)))
      grown(1:ctx%n_strings) = ctx%strings(1:ctx%n_strings)
      call move_alloc(grown, ctx%strings)
    end if
    ctx%n_strings = ctx%n_strings + 1
    associate (s => ctx%strings(ctx%n_strings))
      allocate(s%s(len(text) + 1))
      do i = 1, len(text)
        s%s(i) = text(i:i)
      end do
      s%s(len(text) + 1) = c_null_char
      keep = c_loc(s%s)
    end associate
  end function keep

  type(c_ptr) function ctx_option(p, key) bind(c, name='fkb_layer_option')
    type(c_ptr), value :: p, key
    type(ctx_t), pointer :: ctx
    character(len=:), allocatable :: k, v, msg
    integer :: st
    ctx_option = c_null_ptr
    if (.not. get_ctx(p, ctx) .or. .not. c_associated(key)) return
    k = c_string(key)
    if (.not. ctx%cfg%has(k)) return
    msg = ''
    call ctx%cfg%get_text(k, v, st, msg)
    if (st == FKB_OK) ctx_option = keep(ctx, v)
  end function ctx_option

  type(c_ptr) function ctx_name(p) bind(c, name='fkb_layer_name')
    type(c_ptr), value :: p
    type(ctx_t), pointer :: ctx
    ctx_name = c_null_ptr
    if (get_ctx(p, ctx)) ctx_name = keep(ctx, ctx%name)
  end function ctx_name

  integer(c_int64_t) function ctx_input_size(p) bind(c, name='fkb_layer_input_size')
    type(c_ptr), value :: p
    type(ctx_t), pointer :: ctx
    ctx_input_size = -1
    if (get_ctx(p, ctx)) ctx_input_size = product(ctx%in_shape)
  end function ctx_input_size

  integer(c_int) function ctx_input_shape(p, dims, max_rank) bind(c, name='fkb_layer_input_shape')
    type(c_ptr), value :: p, dims
    integer(c_int), value :: max_rank
    type(ctx_t), pointer :: ctx
    integer(c_int64_t), pointer :: d(:)
    ctx_input_shape = -1
    if (.not. get_ctx(p, ctx)) return
    ctx_input_shape = size(ctx%in_shape)
    if (c_associated(dims) .and. max_rank >= size(ctx%in_shape)) then
      call c_f_pointer(dims, d, [size(ctx%in_shape)])
      d = ctx%in_shape
    end if
  end function ctx_input_shape

  integer(c_int) function ctx_dtype(p) bind(c, name='fkb_layer_dtype')
    type(c_ptr), value :: p
    type(ctx_t), pointer :: ctx
    ctx_dtype = 0
    if (get_ctx(p, ctx)) ctx_dtype = ctx%dtype
  end function ctx_dtype

  logical function read_dims(ctx, rank, dims, d, what)
    ! Checks a rank and dimensions given by the callback; records a refusal if they are bad.
    type(ctx_t), intent(inout) :: ctx
    integer(c_int), intent(in) :: rank
    type(c_ptr), intent(in) :: dims
    integer(int64), allocatable, intent(out) :: d(:)
    character(len=*), intent(in) :: what
    integer(c_int64_t), pointer :: dp(:)
    read_dims = .false.
    if (rank < 1 .or. rank > MAX_RANK .or. .not. c_associated(dims)) then
      call refuse(ctx, FKB_ERR_SHAPE, what // ': rank must be 1..' // &
                  int_text(int(MAX_RANK, int64)) // ' with dimensions given')
      return
    end if
    call c_f_pointer(dims, dp, [rank])
    d = dp
    if (any(d < 1)) then
      call refuse(ctx, FKB_ERR_SHAPE, what // ': dimensions must be at least 1')
    else if (any(d > BLAS_INT_MAX) .or. product(real(d, real64)) > real(BLAS_INT_MAX, real64)) then
      call refuse(ctx, FKB_ERR_SHAPE, what // ': too large')
    else
      read_dims = .true.
    end if
  end function read_dims

  subroutine refuse(ctx, code, text)
    type(ctx_t), intent(inout) :: ctx
    integer, intent(in) :: code
    character(len=*), intent(in) :: text
    if (ctx%refused /= FKB_OK) return
    ctx%refused = code
    ctx%refusal = text
  end subroutine refuse

  integer(c_int) function ctx_set_output_shape(p, rank, dims) &
      bind(c, name='fkb_layer_set_output_shape')
    type(c_ptr), value :: p, dims
    integer(c_int), value :: rank
    type(ctx_t), pointer :: ctx
    integer(int64), allocatable :: d(:)
    ctx_set_output_shape = FKB_ERR_ARGUMENT
    if (.not. get_ctx(p, ctx)) return
    if (.not. read_dims(ctx, rank, dims, d, 'fkb_layer_set_output_shape')) return
    ctx%out_shape = d
    ctx_set_output_shape = FKB_OK
  end function ctx_set_output_shape

  integer(c_int) function ctx_declare_tensor(p, name, rank, dims) &
      bind(c, name='fkb_layer_declare_tensor')
    type(c_ptr), value :: p, name, dims
    integer(c_int), value :: rank
    type(ctx_t), pointer :: ctx
    integer(int64), allocatable :: d(:)
    character(len=:), allocatable :: nm
    type(decl_t), allocatable :: grown(:)
    integer :: k
    ctx_declare_tensor = FKB_ERR_ARGUMENT
    if (.not. get_ctx(p, ctx)) return
    if (.not. c_associated(name)) then
      call refuse(ctx, FKB_ERR_ARGUMENT, 'fkb_layer_declare_tensor: name is NULL')
      return
    end if
    nm = c_string(name)
    if (len(nm) == 0 .or. len(nm) > 64 .or. verify(nm, 'abcdefghijklmnopqrstuvwxyz' // &
        'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.') /= 0) then
      call refuse(ctx, FKB_ERR_ARGUMENT, "fkb_layer_declare_tensor: tensor name '" // nm // &
                  "' must be 1 to 64 of [A-Za-z0-9_.]")
      return
    end if
    do k = 1, size(ctx%decls)
      if (ctx%decls(k)%name == nm) then
        call refuse(ctx, FKB_ERR_ARGUMENT, "fkb_layer_declare_tensor: tensor '" // nm // &
                    "' declared twice")
        return
      end if
    end do
    if (size(ctx%decls) >= MAX_TENSORS) then
      call refuse(ctx, FKB_ERR_ARGUMENT, 'fkb_layer_declare_tensor: more than ' // &
                  int_text(int(MAX_TENSORS, int64)) // ' tensors')
      return
    end if
    if (.not. read_dims(ctx, rank, dims, d, "fkb_layer_declare_tensor '" // nm // "'")) return
    ! (grown by hand: an array constructor of types with allocatable components leaks in
    ! gfortran 12)
    k = size(ctx%decls)
    allocate(grown(k + 1))
    grown(1:k) = ctx%decls
    grown(k + 1)%name = nm
    grown(k + 1)%dims = d
    call move_alloc(grown, ctx%decls)
    ctx_declare_tensor = FKB_OK
  end function ctx_declare_tensor

  subroutine ctx_set_error(p, message) bind(c, name='fkb_layer_set_error')
    type(c_ptr), value :: p, message
    type(ctx_t), pointer :: ctx
    if (.not. get_ctx(p, ctx)) return
    if (c_associated(message)) then
      ctx%error = c_string(message)
    else
      ctx%error = ''
    end if
  end subroutine ctx_set_error

  ! ---- helpers ----

  integer(c_int) function fail(code, text)
    integer, intent(in) :: code
    character(len=*), intent(in) :: text
    call c_set_last_error(text, len(text, c_size_t))
    fail = int(code, c_int)
  end function fail

  function c_string(p) result(s)
    type(c_ptr), intent(in) :: p
    character(len=:), allocatable :: s
    character(kind=c_char), pointer :: chars(:)
    integer(c_size_t) :: n, i
    n = c_strlen(p)
    call c_f_pointer(p, chars, [n])
    allocate(character(len=n) :: s)
    do i = 1, n
      s(i:i) = chars(i)
    end do
  end function c_string

end module fkb_c_layer
